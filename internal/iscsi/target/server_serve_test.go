package target

import (
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"testing"
)

// TestServe serves a target until interrupted, for conformance runs with real
// initiators (libiscsi's iscsi-test-cu, open-iscsi). It runs only with
// RAMPART_ISCSI_SERVE=ADDR:PORT[,ADDR:PORT] and RAMPART_ISCSI_VOLUME=PATH; the target
// is open to every initiator:
//
//	RAMPART_ISCSI_SERVE=127.0.0.1:3260 RAMPART_ISCSI_VOLUME=/tmp/disk.img \
//	  go test ./internal/iscsi/target -run TestServe -timeout 0
func TestServe(t *testing.T) {
	portals, vol := os.Getenv("RAMPART_ISCSI_SERVE"), os.Getenv("RAMPART_ISCSI_VOLUME")
	if portals == "" || vol == "" {
		t.Skip("set RAMPART_ISCSI_SERVE and RAMPART_ISCSI_VOLUME to serve a target")
	}
	cfg := Config{
		Backstores: []Backstore{{Name: "disk", Volume: vol, Size: 256 << 20}},
		Targets: []Target{{
			IQN:        "iqn.2026-11.org.rampart:test",
			LUNs:       []LUN{{LUN: 0, Backstore: "disk"}},
			OpenAccess: true,
		}},
	}
	for n, p := range strings.Split(portals, ",") {
		cfg.Targets[0].PortalGroups = append(cfg.Targets[0].PortalGroups, PortalGroup{Tag: uint16(n + 1), Portals: []string{p}})
	}
	level := slog.LevelInfo
	if os.Getenv("RAMPART_ISCSI_DEBUG") != "" {
		level = slog.LevelDebug
	}
	s, err := New(Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(t.Context(), os.Interrupt)
	defer stop()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("serving %s on %v", cfg.Targets[0].IQN, s.Addrs())
	<-ctx.Done()
	s.Close()
}
