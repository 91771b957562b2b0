package master_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/chunkserver"
	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/master"
	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// durCluster is newCluster with the master's metadata sync options.
func durCluster(t *testing.T, n int, opts meta.Options) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), log: quiet(), heartbeatT: time.Second, csAddr: "127.0.0.1:0", clAddr: "127.0.0.1:0"}
	m, err := master.New(master.Config{Dir: filepath.Join(c.dir, "master"), ChunkserverListen: c.csAddr, ClientListen: c.clAddr,
		HeartbeatTimeout: c.heartbeatT, ReplicationInterval: 100 * time.Millisecond, Log: c.log, MetaSync: opts})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.m, c.csAddr, c.clAddr = m, m.ChunkserverAddr(), m.ClientAddr()
	for i := 0; i < n; i++ {
		c.csCfg = append(c.csCfg, chunkserver.Config{Data: []string{filepath.Join(c.dir, fmt.Sprintf("cs%d", i))}, Listen: "127.0.0.1:0",
			Master: c.csAddr, Heartbeat: 100 * time.Millisecond, ScrubRate: -1, Log: c.log})
		c.cs = append(c.cs, nil)
		c.startCS(i)
	}
	t.Cleanup(func() {
		for _, s := range c.cs {
			if s != nil {
				s.Close()
			}
		}
		c.m.Close()
	})
	c.waitServers(n)
	return c
}

// server returns the chunkserver listening on addr.
func (c *cluster) server(addr string) *chunkserver.Server {
	c.t.Helper()
	for _, s := range c.cs {
		if s != nil && s.Addr() == addr {
			return s
		}
	}
	c.t.Fatalf("no chunkserver at %s", addr)
	return nil
}

// TestFsyncReachesEveryCopy: Sync returns only after every copy of every
// chunk the file wrote has fdatasynced it and the master's metadata log is
// on disk; a copy whose sync fails fails Sync with EIO, and the next Sync
// retries it.
func TestFsyncReachesEveryCopy(t *testing.T) {
	// The background metadata fsync runs hourly here: only Sync's MetaSync
	// puts the log on disk during the test.
	c := durCluster(t, 3, meta.Options{Sync: meta.SyncInterval, SyncInterval: time.Hour})
	ctx := t.Context()
	cl := c.client()
	a, err := cl.Create(ctx, proto.RootIno, "f", regular(0o644))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.WriteAt(ctx, a.Ino, randomBytes(8192), 0); err != nil {
		t.Fatal(err)
	}
	if err := cl.WriteAt(ctx, a.Ino, randomBytes(4096), proto.ChunkSize+4096); err != nil {
		t.Fatal(err)
	}
	var locs []*proto.ChunkLoc
	for idx := uint32(0); idx < 2; idx++ {
		loc, err := cl.ChunkLocation(ctx, a.Ino, idx)
		if err != nil {
			t.Fatal(err)
		}
		if len(loc.Servers) != 2 {
			t.Fatalf("chunk %d has copies %v, want 2", idx, loc.Servers)
		}
		locs = append(locs, loc)
	}
	for _, loc := range locs {
		for _, addr := range loc.Servers {
			if c.server(addr).Store().Durable(loc.ID) {
				t.Fatalf("chunk %016x on %s durable before any fsync", loc.ID, addr)
			}
		}
	}
	if !c.m.MetaUnsynced() {
		t.Fatal("metadata log on disk before any fsync")
	}
	var mu sync.Mutex
	synced := map[string]int{}
	var fail sync.Map // server address -> error to inject
	for _, s := range c.cs {
		addr := s.Addr()
		s.Store().SetSyncHook(func(id uint64, _ uint32) error {
			if v, ok := fail.Load(addr); ok {
				return v.(error)
			}
			mu.Lock()
			synced[fmt.Sprintf("%s/%016x", addr, id)]++
			mu.Unlock()
			return nil
		})
	}
	if err := cl.Sync(ctx, a.Ino); err != nil {
		t.Fatal(err)
	}
	for _, loc := range locs {
		for _, addr := range loc.Servers {
			if !c.server(addr).Store().Durable(loc.ID) {
				t.Errorf("chunk %016x on %s not durable after Sync returned", loc.ID, addr)
			}
			mu.Lock()
			n := synced[fmt.Sprintf("%s/%016x", addr, loc.ID)]
			mu.Unlock()
			if n != 1 {
				t.Errorf("chunk %016x on %s: %d fdatasyncs before Sync returned, want 1", loc.ID, addr, n)
			}
		}
	}
	if c.m.MetaUnsynced() {
		t.Error("metadata log not on disk after Sync returned")
	}

	// A copy that cannot sync fails Sync; the chunk is synced by the next one.
	if err := cl.WriteAt(ctx, a.Ino, randomBytes(4096), 0); err != nil {
		t.Fatal(err)
	}
	bad := locs[0].Servers[1]
	fail.Store(bad, syscall.EIO)
	if err := cl.Sync(ctx, a.Ino); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync with a copy failing its fdatasync: got %v, want EIO", err)
	}
	if c.server(bad).Store().Durable(locs[0].ID) {
		t.Fatal("the failing copy counts as durable")
	}
	fail.Delete(bad)
	if err := cl.Sync(ctx, a.Ino); err != nil {
		t.Fatalf("Sync after the copy recovered: %v", err)
	}
	if !c.server(bad).Store().Durable(locs[0].ID) {
		t.Error("the copy that failed was not synced by the next Sync")
	}
}

// TestWriteThroughStaleLocation: a client writing through a chunk location
// it cached before another client truncated the file (freeing the chunk) is
// refused by the chunkservers, asks the master again, and its data lands in
// the file.
func TestWriteThroughStaleLocation(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := t.Context()
	w, tr := c.client(), c.client()
	want := randomBytes(4096)
	for attempt := 0; ; attempt++ {
		name := fmt.Sprintf("f%d", attempt)
		a := writeFile(t, w, name, randomBytes(8192)) // w caches chunk 0's copies for writing
		cached := time.Now()
		if _, err := tr.Setattr(ctx, a.Ino, client.SetAttr{Valid: proto.SetSize, Size: 0}); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteAt(ctx, a.Ino, want, 0); err != nil {
			t.Fatal(err)
		}
		if time.Since(cached) > client.CacheTTL*8/10 {
			// The machine was too slow for w to still trust its cache.
			if attempt == 5 {
				t.Fatal("truncate and write never fit in the client's cache time")
			}
			continue
		}
		if err := w.Flush(ctx, a.Ino); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Open(ctx, a.Ino, 0); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		n, err := tr.ReadAt(ctx, a.Ino, got, 0)
		if err != nil || n != len(want) {
			t.Fatalf("read after the write: %d bytes, %v", n, err)
		}
		if string(got) != string(want) {
			t.Fatal("the write through the location cached before the truncate is lost")
		}
		return
	}
}

// TestLocksSurviveMasterRestart: a lock held through a master restart is
// held after it (the holder takes it again on its new connection while the
// restarted master holds new requests): another client still cannot take
// it until the holder unlocks.
func TestLocksSurviveMasterRestart(t *testing.T) {
	c := newCluster(t, 2, nil)
	ctx := t.Context()
	holder, other := c.client(), c.client()
	a := writeFile(t, holder, "locked", randomBytes(100))
	whole := func(owner uint64, typ uint32) *proto.Lock {
		return &proto.Lock{Ino: a.Ino, Owner: owner, Start: 0, End: 1<<63 - 1, Type: typ, Pid: 1}
	}
	if err := holder.Setlk(ctx, whole(1, proto.LockWrite), false); err != nil {
		t.Fatal(err)
	}
	if err := other.Setlk(ctx, whole(2, proto.LockWrite), false); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("lock taken by another client before the restart: got %v, want EAGAIN", err)
	}
	c.m.Close()
	c.startMaster()
	// The holder is idle: it must notice the restart by itself.
	if err := other.Setlk(ctx, whole(2, proto.LockWrite), false); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("lock after the master restart: got %v, want EAGAIN (still held by the first client)", err)
	}
	got, err := other.Getlk(ctx, whole(2, proto.LockRead))
	if err != nil || got.Type != proto.LockWrite || got.Owner != 1 {
		t.Fatalf("Getlk after the restart = %+v, %v; want the holder's write lock", got, err)
	}
	if err := holder.Setlk(ctx, whole(1, proto.LockUnlock), false); err != nil {
		t.Fatal(err)
	}
	if err := other.Setlk(ctx, whole(2, proto.LockWrite), false); err != nil {
		t.Fatalf("lock after the holder unlocked: %v", err)
	}
}

// TestLostLockFailsWithEIO: a client whose connection broke long enough for
// another client to take its lock cannot take it back: its next lock
// request on the file fails with EIO, until it unlocks the whole file.
func TestLostLockFailsWithEIO(t *testing.T) {
	c := newCluster(t, 2, nil)
	ctx := t.Context()
	px := newProxy(t, c.clAddr)
	holder, err := client.Dial(ctx, px.addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Close() })
	other := c.client()
	a := writeFile(t, other, "locked", randomBytes(100))
	whole := func(owner uint64, typ uint32) *proto.Lock {
		return &proto.Lock{Ino: a.Ino, Owner: owner, Start: 0, End: 1<<63 - 1, Type: typ, Pid: 1}
	}
	if err := holder.Setlk(ctx, whole(1, proto.LockWrite), false); err != nil {
		t.Fatal(err)
	}
	px.cut(true) // the holder's connection breaks; the master drops its locks
	c.waitFor(5*time.Second, "the other client's lock", func() bool {
		return other.Setlk(ctx, whole(2, proto.LockWrite), false) == nil
	})
	px.cut(false)
	c.waitFor(5*time.Second, "the holder's reconnect", func() bool { return holder.HeldLocks() == 0 })
	if err := holder.Setlk(ctx, whole(1, proto.LockRead), false); !errors.Is(err, syscall.EIO) {
		t.Fatalf("lock request after the lock was lost: got %v, want EIO", err)
	}
	if _, err := holder.Getlk(ctx, whole(1, proto.LockRead)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Getlk after the lock was lost: got %v, want EIO", err)
	}
	if err := holder.Setlk(ctx, whole(1, proto.LockUnlock), false); err != nil {
		t.Fatalf("unlock of the lost lock: %v", err)
	}
	if err := holder.Setlk(ctx, whole(1, proto.LockRead), false); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("lock request after the unlock: got %v, want EAGAIN (the other client holds it)", err)
	}
}

// proxy forwards TCP connections to a target; cut closes them and refuses
// new ones until it is lifted.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut(true) })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				in.Close()
				continue
			}
			var d net.Dialer
			dctx, cancel := context.WithTimeout(t.Context(), time.Second)
			out, err := d.DialContext(dctx, "tcp", target)
			cancel()
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) cut(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}
