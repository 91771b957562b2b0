// Package localtest starts single-process DFS clusters with FUSE mounts for tests.
package localtest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/fusefs"
	"github.com/rampart-storage/rampart/internal/dfs/local"
	"github.com/rampart-storage/rampart/internal/testutil"
)

// Mounts starts a local cluster (master and three chunkservers, heartbeats every
// 100 ms) and mounts it n times, each through its own client (its own master
// session), as n machines would. Everything stops when the test ends. It skips the
// test unless it runs as root with RAMPART_ROOT_TESTS=1.
func Mounts(t *testing.T, n int) (*local.Cluster, []string) {
	t.Helper()
	testutil.RequireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cl, err := local.Start(ctx, local.Config{Dir: t.TempDir(), Heartbeat: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	mnts := make([]string, n)
	for i := range mnts {
		c, err := client.Dial(ctx, cl.Master.ClientAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		mnts[i] = t.TempDir()
		srv, err := fusefs.Mount(mnts[i], c, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Unmount() })
	}
	return cl, mnts
}
