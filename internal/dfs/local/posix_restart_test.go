package local_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/chunkserver"
	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/fusefs"
	"github.com/rampart-storage/rampart/internal/dfs/master"
	"github.com/rampart-storage/rampart/internal/testutil"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestUnlinkedOpenSurvivesMasterRestart: a file unlinked while open through
// a mount keeps working across a master restart (the mount opens it again
// on the new connection) and goes at its last close.
func TestUnlinkedOpenSurvivesMasterRestart(t *testing.T) {
	testutil.RequireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	clAddr, csAddr := freeAddr(t), freeAddr(t)
	startMaster := func() *master.Master {
		m, err := master.New(master.Config{Dir: filepath.Join(dir, "master"), ClientListen: clAddr, ChunkserverListen: csAddr,
			HeartbeatTimeout: time.Second, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := startMaster()
	t.Cleanup(func() { m.Close() })
	for i := 0; i < 3; i++ {
		s, err := chunkserver.New(chunkserver.Config{Data: []string{filepath.Join(dir, fmt.Sprintf("cs%d", i))},
			Listen: "127.0.0.1:0", Master: csAddr, Heartbeat: 100 * time.Millisecond, Log: log})
		if err == nil {
			err = s.Start(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	for {
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Servers) == 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := client.Dial(ctx, clAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	mnt := t.TempDir()
	srv, err := fusefs.Mount(mnt, c, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount() })

	p := filepath.Join(mnt, "tmpfile")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // before the unmount, even when a check fails
	if _, err := f.Write([]byte("before restart")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	inodes := func() uint64 {
		s, err := statfs(mnt)
		if err != nil {
			t.Fatalf("statfs: %v", err)
		}
		return s.Files - s.Ffree
	}
	withOrphan := inodes()

	m.Close()
	m = startMaster()

	if _, err := f.WriteAt([]byte(", after"), 14); err != nil {
		t.Fatalf("write to the unlinked file after the master restart: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync after the master restart: %v", err)
	}
	got := make([]byte, 21)
	if _, err := f.ReadAt(got, 0); err != nil || string(got) != "before restart, after" {
		t.Fatalf("read after the master restart: %q, %v", got, err)
	}
	if n := inodes(); n != withOrphan {
		t.Errorf("inodes after the restart: %d, want %d (the orphan kept)", n, withOrphan)
	}
	f.Close()
	deadline := time.Now().Add(5 * time.Second)
	for inodes() != withOrphan-1 {
		if time.Now().After(deadline) {
			t.Fatalf("inodes 5s after the last close: %d, want %d", inodes(), withOrphan-1)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
