package local_test

import (
	"context"
	"errors"
	"math"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

func dialAgain(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, err := client.Dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLocksAcrossClients takes locks from two clients (two sessions) of one
// master and checks conflicts, byte ranges, blocking waits and the release
// of a dead client's locks.
func TestLocksAcrossClients(t *testing.T) {
	cl, a := startCluster(t, t.TempDir())
	defer cl.Close()
	defer a.Close()
	b := dialAgain(t, cl.Master.ClientAddr())
	ctx := t.Context()
	f, err := a.Create(ctx, meta.RootIno, "f", meta.Node{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	lk := func(owner, start, end uint64, typ uint32, kind uint8) *proto.Lock {
		return &proto.Lock{Ino: f.Ino, Owner: owner, Start: start, End: end, Type: typ, Pid: uint32(owner), Kind: kind}
	}
	steps := []struct {
		name string
		c    *client.Client
		l    *proto.Lock
		want error
	}{
		{"a writes 0-99", a, lk(1, 0, 99, proto.LockWrite, proto.LockPOSIX), nil},
		{"b reads 50-60: conflict", b, lk(1, 50, 60, proto.LockRead, proto.LockPOSIX), syscall.EAGAIN},
		{"b writes 100-199: disjoint", b, lk(1, 100, 199, proto.LockWrite, proto.LockPOSIX), nil},
		{"a other owner reads 150: conflict", a, lk(2, 150, 150, proto.LockRead, proto.LockPOSIX), syscall.EAGAIN},
		{"b flock is another name space", b, lk(7, 0, math.MaxInt64, proto.LockWrite, proto.LockFlock), nil},
		{"a flock conflicts with b's", a, lk(8, 0, math.MaxInt64, proto.LockRead, proto.LockFlock), syscall.EAGAIN},
		{"a unlocks 0-49", a, lk(1, 0, 49, proto.LockUnlock, proto.LockPOSIX), nil},
		{"b reads 0-49 now", b, lk(1, 0, 49, proto.LockRead, proto.LockPOSIX), nil},
		{"b reads 50 still conflicts", b, lk(1, 50, 50, proto.LockRead, proto.LockPOSIX), syscall.EAGAIN},
		{"a downgrades 50-99 to read", a, lk(1, 50, 99, proto.LockRead, proto.LockPOSIX), nil},
		{"b reads 50-99 now", b, lk(1, 50, 99, proto.LockRead, proto.LockPOSIX), nil},
	}
	for _, s := range steps {
		err := s.c.Setlk(ctx, s.l, false)
		if s.want == nil && err != nil || s.want != nil && !errors.Is(err, s.want) {
			t.Errorf("%s: got %v, want %v", s.name, err, s.want)
		}
	}
	got, err := a.Getlk(ctx, lk(3, 120, 130, proto.LockRead, proto.LockPOSIX))
	if err != nil || got.Type != proto.LockWrite || got.Start != 100 || got.End != 199 || got.Pid != 1 {
		t.Errorf("getlk over b's write lock: got %+v, %v; want write 100-199 pid 1", got, err)
	}
	if got, err := a.Getlk(ctx, lk(3, 300, 400, proto.LockWrite, proto.LockPOSIX)); err != nil || got.Type != proto.LockUnlock {
		t.Errorf("getlk on a free range: got %+v, %v; want unlocked", got, err)
	}

	// A blocking request waits until b's client dies.
	done := make(chan error, 1)
	go func() { done <- a.Setlk(ctx, lk(1, 100, 100, proto.LockWrite, proto.LockPOSIX), true) }()
	select {
	case err := <-done:
		t.Fatalf("blocking lock returned %v while b holds the range", err)
	case <-time.After(300 * time.Millisecond):
	}
	b.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("blocking lock after b's client closed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocking lock still waiting 5s after the holder's client closed")
	}
	if err := a.Setlk(ctx, lk(8, 0, math.MaxInt64, proto.LockWrite, proto.LockFlock), false); err != nil {
		t.Errorf("flock after b's client closed: %v", err)
	}
}

// TestUnlinkedOpenAcrossClients: a file open in one client stays readable
// after another client unlinks it, and goes when the handle is released or
// the holder's client dies.
func TestUnlinkedOpenAcrossClients(t *testing.T) {
	cl, a := startCluster(t, t.TempDir())
	defer cl.Close()
	defer a.Close()
	b := dialAgain(t, cl.Master.ClientAddr())
	ctx := t.Context()
	for _, end := range []string{"release", "client death"} {
		f, err := a.CreateOpen(ctx, meta.RootIno, "f", meta.Node{Mode: syscall.S_IFREG | 0o644})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.WriteAt(ctx, f.Ino, []byte("still here"), 0); err != nil {
			t.Fatal(err)
		}
		if err := b.Unlink(ctx, meta.RootIno, "f", false); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		if n, err := a.ReadAt(ctx, f.Ino, buf, 0); err != nil || string(buf[:n]) != "still here" {
			t.Errorf("%s: read after unlink: got %q, %v", end, buf[:n], err)
		}
		if err := a.WriteAt(ctx, f.Ino, []byte("!"), 10); err != nil {
			t.Errorf("%s: write after unlink: %v", end, err)
		}
		if at, err := a.Getattr(ctx, f.Ino); err != nil || at.Nlink != 0 || at.Size != 11 {
			t.Errorf("%s: fstat after unlink: %+v, %v; want nlink 0 size 11", end, at, err)
		}
		if info, err := b.Info(ctx); err != nil || info.Chunks.Total != 1 {
			t.Errorf("%s: chunks while the unlinked file is open: %+v, %v; want 1", end, info, err)
		}
		if end == "release" {
			if err := a.Release(ctx, f.Ino); err != nil {
				t.Fatal(err)
			}
		} else {
			a.Close()
			a = dialAgain(t, cl.Master.ClientAddr())
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := b.Getattr(ctx, f.Ino)
			if errors.Is(err, syscall.ENOENT) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: inode still there 5s after the last handle went: %v", end, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if info, err := b.Info(ctx); err != nil || info.Chunks.Total != 0 {
			t.Errorf("%s: chunks after the last handle went: %+v, %v; want 0 (freed)", end, info.Chunks, err)
		}
	}
}

func TestStatfsAndXattrs(t *testing.T) {
	cl, c := startCluster(t, t.TempDir())
	defer cl.Close()
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st0, err := c.Statfs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := c.Info(ctx)
	if st0.Total == 0 || st0.Total != info.Space.Total || st0.Free > st0.Total || st0.Inodes != 1 {
		t.Errorf("statfs of a new file system: %+v, want total %d from info, 1 inode", st0, info.Space.Total)
	}
	f, err := c.Create(ctx, meta.RootIno, "f", meta.Node{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Statfs(ctx); st.Inodes != 2 {
		t.Errorf("inodes after a create: got %d, want 2", st.Inodes)
	}
	if err := c.Setxattr(ctx, f.Ino, "user.k", []byte("v"), proto.XattrCreate); err != nil {
		t.Fatal(err)
	}
	if err := c.Setxattr(ctx, f.Ino, "user.k", []byte("v"), proto.XattrCreate); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("XATTR_CREATE over an existing attribute: got %v, want EEXIST", err)
	}
	if v, err := c.Getxattr(ctx, f.Ino, "user.k"); err != nil || string(v) != "v" {
		t.Errorf("getxattr: got %q, %v", v, err)
	}
	if names, err := c.Listxattr(ctx, f.Ino); err != nil || len(names) != 1 || names[0] != "user.k" {
		t.Errorf("listxattr: got %v, %v", names, err)
	}
	if err := c.Removexattr(ctx, f.Ino, "user.k"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Getxattr(ctx, f.Ino, "user.k"); !errors.Is(err, syscall.ENODATA) {
		t.Errorf("getxattr after remove: got %v, want ENODATA", err)
	}
}
