package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/rampart-storage/rampart/internal/iscsi/target"
)

// TestIQN is the target name StartTarget serves.
const TestIQN = "iqn.2026-11.org.rampart:testutil"

// StartTarget serves a fresh sparse file of size bytes as LUN 0 of TestIQN, in
// process, on a free port of 127.0.0.1, open to every initiator; it returns the LUN's
// iscsi:// URL. The server stops when the test ends.
func StartTarget(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	cfg := target.Config{
		Backstores: []target.Backstore{{Name: "disk", Volume: filepath.Join(dir, "disk.img"), Size: size}},
		Targets: []target.Target{{
			IQN:          TestIQN,
			PortalGroups: []target.PortalGroup{{Tag: 1, Portals: []string{"127.0.0.1:0"}}},
			LUNs:         []target.LUN{{LUN: 0, Backstore: "disk"}},
			OpenAccess:   true,
		}},
	}
	s, err := target.New(target.Options{Config: cfg, StateDir: filepath.Join(dir, "state"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("start target: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatalf("start target: %v", err)
	}
	t.Cleanup(func() { cancel(); s.Close() })
	return fmt.Sprintf("iscsi://%s/%s/0", s.Addrs()[0], TestIQN)
}
