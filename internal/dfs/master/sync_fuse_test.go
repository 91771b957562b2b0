package master_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/fusefs"
	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/testutil"
)

// TestMountFsyncAndODSYNC: through a FUSE mount, close does not make data
// durable, fsync does, and a write(2) to a file opened with O_DSYNC returns
// only once every copy has fdatasynced it (the kernel sends FSYNC after each
// such write).
func TestMountFsyncAndODSYNC(t *testing.T) {
	testutil.RequireRoot(t)
	c := durCluster(t, 3, meta.Options{Sync: meta.SyncInterval, SyncInterval: time.Hour})
	cl := c.client()
	mnt := t.TempDir()
	srv, err := fusefs.Mount(mnt, cl, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount() })
	ctx := t.Context()
	durable := func(name string) bool {
		t.Helper()
		a, err := cl.Lookup(ctx, 1, name)
		if err != nil {
			t.Fatal(err)
		}
		loc, err := cl.ChunkLocation(ctx, a.Ino, 0)
		if err != nil || len(loc.Servers) == 0 {
			t.Fatalf("chunk 0 of %s: %+v, %v", name, loc, err)
		}
		for _, addr := range loc.Servers {
			if !c.server(addr).Store().Durable(loc.ID) {
				return false
			}
		}
		return true
	}
	data := randomBytes(4096)

	f, err := os.OpenFile(filepath.Join(mnt, "plain"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if durable("plain") {
		t.Error("data durable after close without fsync (close must stay cheap)")
	}
	if !c.m.MetaUnsynced() {
		t.Error("metadata log on disk after close without fsync")
	}
	f, err = os.OpenFile(filepath.Join(mnt, "plain"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !durable("plain") {
		t.Error("data not durable after fsync returned")
	}
	if c.m.MetaUnsynced() {
		t.Error("metadata log not on disk after fsync returned")
	}

	for _, flag := range []int{syscall.O_DSYNC, syscall.O_SYNC} {
		name := "dsync"
		if flag == syscall.O_SYNC {
			name = "sync"
		}
		f, err := os.OpenFile(filepath.Join(mnt, name), os.O_CREATE|os.O_WRONLY|flag, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if !durable(name) {
			t.Errorf("%s: write returned before every copy fdatasynced the data", name)
		}
		if c.m.MetaUnsynced() {
			t.Errorf("%s: write returned before the metadata log was on disk", name)
		}
		f.Close()
	}
}
