package client

import (
	"context"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/local"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// TestUnsyncedWritesSweptToDisk: chunks a file wrote but nobody synced are
// synced in the background once the file has been quiet for the expiry
// time, and the client's record of them empties.
func TestUnsyncedWritesSweptToDisk(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, cl := localClient(t, ctx)
	c.dirty.expire, c.dirty.every = 100*time.Millisecond, 50*time.Millisecond
	a, err := c.Create(ctx, proto.RootIno, "f", proto.Node{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteAt(ctx, a.Ino, make([]byte, 8192), 0); err != nil {
		t.Fatal(err)
	}
	loc, err := c.ChunkLocation(ctx, a.Ino, 0)
	if err != nil || len(loc.Servers) == 0 {
		t.Fatalf("chunk 0: %+v, %v", loc, err)
	}
	durable := func() bool {
		n := 0
		for _, s := range cl.Chunkservers {
			for _, addr := range loc.Servers {
				if s.Addr() == addr && s.Store().Durable(loc.ID) {
					n++
				}
			}
		}
		return n == len(loc.Servers)
	}
	if durable() {
		t.Fatal("durable right after the write")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !durable() {
		if time.Now().After(deadline) {
			t.Fatal("unsynced chunk not synced in the background 10 s after the write")
		}
		time.Sleep(20 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		c.dirty.mu.Lock()
		n, sweeping := len(c.dirty.files), c.dirty.sweeping
		c.dirty.mu.Unlock()
		if n == 0 && !sweeping {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the sweep: %d files recorded, sweep running %v; want 0, false", n, sweeping)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// localClient starts a single-machine cluster (fast heartbeats) and a client
// connected to it; both stop when the test ends.
func localClient(t *testing.T, ctx context.Context) (*Client, *local.Cluster) {
	t.Helper()
	cl, err := local.Start(ctx, local.Config{Dir: t.TempDir(), Heartbeat: 100 * time.Millisecond, HeartbeatTimeout: time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c, err := Dial(ctx, cl.Master.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, cl
}
