package master_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/chunkserver"
	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/master"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// cluster is a master and chunkservers started one by one, so that a test
// can stop and restart each.
type cluster struct {
	t          testing.TB
	dir        string
	log        *slog.Logger
	m          *master.Master
	csAddr     string // the master's chunkserver address
	clAddr     string // the master's client address
	cs         []*chunkserver.Server
	csCfg      []chunkserver.Config
	heartbeatT time.Duration
}

func quiet() *slog.Logger {
	if os.Getenv("DFS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newCluster(t testing.TB, n int, tweak func(i int, c *chunkserver.Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), log: quiet(), heartbeatT: time.Second,
		csAddr: "127.0.0.1:0", clAddr: "127.0.0.1:0"}
	c.startMaster()
	for i := 0; i < n; i++ {
		cfg := chunkserver.Config{Data: []string{filepath.Join(c.dir, fmt.Sprintf("cs%d", i))}, Listen: "127.0.0.1:0",
			Master: c.csAddr, Heartbeat: 100 * time.Millisecond, ScrubRate: -1, Log: c.log}
		if tweak != nil {
			tweak(i, &cfg)
		}
		c.csCfg = append(c.csCfg, cfg)
		c.cs = append(c.cs, nil)
		c.startCS(i)
	}
	t.Cleanup(func() {
		for _, s := range c.cs {
			if s != nil {
				s.Close()
			}
		}
		if c.m != nil {
			c.m.Close()
		}
	})
	c.waitServers(n)
	return c
}

func (c *cluster) startMaster() {
	c.t.Helper()
	m, err := master.New(master.Config{Dir: filepath.Join(c.dir, "master"), ChunkserverListen: c.csAddr, ClientListen: c.clAddr,
		HeartbeatTimeout: c.heartbeatT, ReplicationInterval: 100 * time.Millisecond, Log: c.log})
	if err != nil {
		c.t.Fatal(err)
	}
	// A restart may find the old ports still closing.
	for i := 0; ; i++ {
		if err = m.Start(c.t.Context()); err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.m, c.csAddr, c.clAddr = m, m.ChunkserverAddr(), m.ClientAddr()
}

func (c *cluster) startCS(i int) {
	c.t.Helper()
	c.csCfg[i].Master = c.csAddr
	s, err := chunkserver.New(c.csCfg[i])
	if err == nil {
		err = s.Start(c.t.Context())
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.cs[i] = s
	c.csCfg[i].Listen = s.Addr() // the same address on a restart
}

func (c *cluster) waitServers(n int) {
	c.t.Helper()
	c.waitFor(10*time.Second, fmt.Sprintf("%d live chunkservers", n), func() bool {
		info, err := c.m.Info()
		live := 0
		for _, s := range info.Servers {
			if s.Live {
				live++
			}
		}
		return err == nil && live >= n
	})
}

func (c *cluster) waitFor(d time.Duration, what string, cond func() bool) time.Duration {
	c.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			c.t.Fatalf("no %s after %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func (c *cluster) client() *client.Client {
	c.t.Helper()
	cl, err := client.Dial(c.t.Context(), c.clAddr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

func regular(mode uint32) proto.Node { return proto.Node{Mode: syscall.S_IFREG | mode} }

// A namespace change sent twice under one request id (a lost reply) is
// applied once and both answers are success, before and after a master
// restart; a new request on a taken name still fails.
func TestSessionOpAppliedOnce(t *testing.T) {
	c := newCluster(t, 0, nil)
	ctx := t.Context()
	send := func(seq uint64, typ proto.MsgType, e *proto.Enc) ([]byte, error) {
		p, err := proto.Dial(ctx, c.clAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		var w proto.Enc
		(&proto.SessionOp{Session: 42, Seq: seq, Type: typ, Payload: e.B}).Encode(&w)
		return p.Call(ctx, proto.MsgSessionOp, w.B)
	}
	create := func(name string) *proto.Enc {
		var e proto.Enc
		e.U64(proto.RootIno)
		e.String(name)
		e.U32(syscall.S_IFREG | 0o644)
		e.U32(0)
		e.U32(0)
		e.U32(0)
		e.String("")
		return &e
	}
	rename := func(from, to string) *proto.Enc {
		var e proto.Enc
		e.U64(proto.RootIno)
		e.String(from)
		e.U64(proto.RootIno)
		e.String(to)
		e.U32(0)
		return &e
	}
	unlink := func(name string) *proto.Enc {
		var e proto.Enc
		e.U64(proto.RootIno)
		e.String(name)
		e.U8(0)
		return &e
	}
	steps := []struct {
		seq  uint64
		typ  proto.MsgType
		e    *proto.Enc
		name string
	}{
		{1, proto.MsgCreate, create("a"), "create a"},
		{2, proto.MsgCreate, create("b"), "create b"},
		{3, proto.MsgRename, rename("a", "c"), "rename a c"},
		{4, proto.MsgUnlink, unlink("b"), "unlink b"},
	}
	var ino uint64
	for round := 0; round < 3; round++ {
		if round == 2 {
			c.m.Close()
			c.startMaster()
		}
		for _, s := range steps {
			b, err := send(s.seq, s.typ, s.e)
			if err != nil {
				t.Fatalf("round %d: %s: %v", round, s.name, err)
			}
			if s.seq == 1 {
				var a proto.Attr
				if err := a.Decode(b); err != nil {
					t.Fatal(err)
				}
				if round == 0 {
					ino = a.Ino
				} else if a.Ino != ino {
					t.Errorf("round %d: retried create answered inode %d, want %d", round, a.Ino, ino)
				}
			}
		}
	}
	// A fresh request for a name that exists fails as it should.
	if _, err := send(5, proto.MsgCreate, create("c")); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("new create of an existing name: got %v, want EEXIST", err)
	}
	cl := c.client()
	ents, err := cl.Readdir(ctx, proto.RootIno)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	if got := strings.Join(names, ","); got != "c" {
		t.Errorf("root after the retried requests: got %q, want \"c\"", got)
	}
}

// A client creating, renaming and removing files rides out two master
// restarts: every call returns success and the namespace holds exactly what
// the calls said.
func TestClientRidesOutMasterRestart(t *testing.T) {
	c := newCluster(t, 0, nil)
	cl := c.client()
	ctx := t.Context()
	var mu sync.Mutex
	want := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed error
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a, b := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("w%d-%d-r", w, i)
				err := func() error {
					if _, err := cl.Create(ctx, proto.RootIno, a, regular(0o644)); err != nil {
						return fmt.Errorf("create %s: %w", a, err)
					}
					if err := cl.Rename(ctx, proto.RootIno, a, proto.RootIno, b, 0); err != nil {
						return fmt.Errorf("rename %s: %w", a, err)
					}
					if i%2 == 0 {
						if err := cl.Unlink(ctx, proto.RootIno, b, false); err != nil {
							return fmt.Errorf("unlink %s: %w", b, err)
						}
						return nil
					}
					mu.Lock()
					want[b] = true
					mu.Unlock()
					return nil
				}()
				if err != nil {
					mu.Lock()
					failed = errors.Join(failed, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	for r := 0; r < 2; r++ {
		time.Sleep(300 * time.Millisecond)
		c.m.Close()
		time.Sleep(200 * time.Millisecond)
		c.startMaster()
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed != nil {
		t.Fatalf("calls failed across master restarts: %v", failed)
	}
	ents, err := cl.Readdir(ctx, proto.RootIno)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range ents {
		got[e.Name] = true
	}
	for n := range want {
		if !got[n] {
			t.Errorf("%s: created and renamed with success, missing after the restarts", n)
		}
	}
	for n := range got {
		if !want[n] {
			t.Errorf("%s: present, but no successful call left it", n)
		}
	}
	if len(want) == 0 {
		t.Error("no operation completed")
	}
}

func writeFile(t testing.TB, cl *client.Client, name string, data []byte) *proto.Attr {
	t.Helper()
	ctx := t.Context()
	a, err := cl.Create(ctx, proto.RootIno, name, regular(0o644))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.WriteAt(ctx, a.Ino, data, 0); err != nil {
		t.Fatal(err)
	}
	return a
}

func chunkFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".chunk") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// goodCopies counts the copies of chunk loc that read back as want from
// their chunkservers directly.
func goodCopies(ctx context.Context, cl *client.Client, ino uint64, want []byte) (int, error) {
	loc, err := cl.ChunkLocation(ctx, ino, 0)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, addr := range loc.Servers {
		p, err := proto.Dial(ctx, addr)
		if err != nil {
			continue
		}
		var e proto.Enc
		(&proto.ChunkRead{ID: loc.ID, Version: loc.Version, Length: uint32(len(want))}).Encode(&e)
		b, err := p.Call(ctx, proto.MsgChunkRead, e.B)
		p.Close()
		if err == nil && bytes.Equal(b, want) {
			n++
		}
	}
	return n, nil
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// A flipped byte in one copy: the read returns the right data from another
// copy, the bad copy is reported and dropped, and the chunk soon has its
// goal of good copies again. Then the same without a read: the scrub finds it.
func TestBadBlockRepaired(t *testing.T) {
	for _, byScrub := range []bool{false, true} {
		t.Run(fmt.Sprintf("scrub=%v", byScrub), func(t *testing.T) {
			c := newCluster(t, 3, func(i int, cfg *chunkserver.Config) {
				if byScrub {
					cfg.ScrubRate, cfg.ScrubPause = 1<<30, 50*time.Millisecond
				}
			})
			cl := c.client()
			ctx := t.Context()
			data := bytes.Repeat([]byte("0123456789abcdef"), 3*chunkserver.BlockSize/16)
			a := writeFile(t, cl, "f", data)
			loc, err := cl.ChunkLocation(ctx, a.Ino, 0)
			if err != nil || len(loc.Servers) != 2 {
				t.Fatalf("chunk location: %v %v, want 2 copies", loc, err)
			}
			// Corrupt the copy on the first server the client reads.
			var victim string
			for i, s := range c.cs {
				if s.Addr() == loc.Servers[0] {
					files := chunkFiles(t, c.csCfg[i].Data[0])
					if len(files) != 1 {
						t.Fatalf("chunkserver %d holds %d chunk files, want 1", i, len(files))
					}
					victim = files[0]
				}
			}
			flipByte(t, victim, chunkserver.HeaderSize+chunkserver.BlockSize+100)
			if !byScrub {
				got := make([]byte, len(data))
				if n, err := cl.ReadAt(ctx, a.Ino, got, 0); err != nil || n != len(data) || !bytes.Equal(got, data) {
					t.Fatalf("read with one bad copy: %d bytes, %v; equal %v", n, err, bytes.Equal(got, data))
				}
			}
			took := c.waitFor(20*time.Second, "two good copies", func() bool {
				n, err := goodCopies(ctx, cl, a.Ino, data)
				return err == nil && n == 2
			})
			t.Logf("goal of good copies restored %s after the corruption", took)
			c.waitFor(10*time.Second, "the bad copy deleted", func() bool {
				_, err := os.Stat(victim)
				return errors.Is(err, os.ErrNotExist)
			})
		})
	}
}

// A chunkserver away while a chunk it holds is rewritten keeps a stale copy;
// when it comes back the master tells it to delete the copy.
func TestStaleCopyDeleted(t *testing.T) {
	c := newCluster(t, 3, nil)
	cl := c.client()
	ctx := t.Context()
	data := randomBytes(256 << 10)
	a := writeFile(t, cl, "f", data)
	loc, _ := cl.ChunkLocation(ctx, a.Ino, 0)
	var away int
	for i, s := range c.cs {
		if s.Addr() == loc.Servers[1] {
			away = i
		}
	}
	c.cs[away].Close()
	c.cs[away] = nil
	// The write fails on the missing copy, the master moves the chunk to a
	// new version on the survivor.
	if err := cl.WriteAt(ctx, a.Ino, data[:4096], 0); err != nil {
		t.Fatal(err)
	}
	nloc, _ := cl.ChunkLocation(ctx, a.Ino, 0)
	if nloc.Version == loc.Version {
		t.Fatalf("chunk version stayed %d after a write that lost a copy", loc.Version)
	}
	c.startCS(away)
	c.waitFor(10*time.Second, "the stale copy deleted", func() bool {
		v, ok := c.cs[away].Store().Chunks()[loc.ID]
		return !ok || v == nloc.Version
	})
}

func randomBytes(n int) []byte {
	rng := rand.New(rand.NewPCG(5, 6))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// Chunkservers with little room: the writer gets ENOSPC, the data written
// before reads back, and no copy has a block that fails its CRC.
func TestFullDiskENOSPC(t *testing.T) {
	const capacity = chunkserver.HeaderSize + 6<<20
	c := newCluster(t, 2, func(i int, cfg *chunkserver.Config) { cfg.Capacity = capacity })
	cl := c.client()
	ctx := t.Context()
	data := randomBytes(2 << 20)
	a := writeFile(t, cl, "f", data)
	more := randomBytes(8 << 20)
	err := cl.WriteAt(ctx, a.Ino, more, int64(len(data)))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write past the capacity: got %v, want ENOSPC", err)
	}
	got := make([]byte, len(data))
	if n, err := cl.ReadAt(ctx, a.Ino, got, 0); err != nil || n != len(data) || !bytes.Equal(got, data) {
		t.Fatalf("read back after ENOSPC: %d bytes, %v", n, err)
	}
	loc, _ := cl.ChunkLocation(ctx, a.Ino, 0)
	for _, s := range c.cs {
		buf := make([]byte, 4<<20)
		if err := s.Store().ReadAt(loc.ID, loc.Version, buf, 0); err != nil {
			t.Errorf("chunkserver %s: copy after ENOSPC: %v", s.Addr(), err)
		}
	}
}

// Deleting a file deletes its copies on the chunkservers.
func TestUnlinkDeletesCopies(t *testing.T) {
	c := newCluster(t, 2, nil)
	cl := c.client()
	writeFile(t, cl, "f", randomBytes(100<<10))
	if err := cl.Unlink(t.Context(), proto.RootIno, "f", false); err != nil {
		t.Fatal(err)
	}
	c.waitFor(10*time.Second, "copies deleted", func() bool {
		return len(c.cs[0].Store().Chunks())+len(c.cs[1].Store().Chunks()) == 0
	})
}

// rampart info's counts follow a lost chunkserver (under goal, copies on a
// lost server) until the replication loop restores the goal, and a lowered
// goal until the extra copies are dropped.
func TestInfoFollowsReplication(t *testing.T) {
	c := newCluster(t, 3, nil)
	cl := c.client()
	ctx := t.Context()
	var files []*proto.Attr
	for i := 0; i < 4; i++ {
		files = append(files, writeFile(t, cl, fmt.Sprintf("f%d", i), randomBytes(64<<10)))
	}
	info, err := cl.Info(ctx)
	if err != nil || info.Chunks.OK != 4 || info.Chunks.States.Valid != 8 {
		t.Fatalf("info after writing: %+v, %v; want 4 ok chunks, 8 valid copies", info.Chunks, err)
	}
	gone := c.cs[0].Addr()
	c.cs[0].Close()
	c.cs[0] = nil
	took := c.waitFor(20*time.Second, "the goal restored on the live chunkservers", func() bool {
		info, err := cl.Info(ctx)
		if err != nil {
			return false
		}
		for _, s := range info.Servers {
			if s.Addr == gone && s.Live {
				return false // not noticed yet
			}
		}
		ch := info.Chunks
		return ch.Undergoal == 0 && ch.Missing == 0 && ch.OK == 4 && ch.States.Valid == 8 && ch.States.Lost > 0
	})
	t.Logf("goal restored %s after a chunkserver was lost", took)
	for _, f := range files {
		if _, err := cl.Setattr(ctx, f.Ino, client.SetAttr{Valid: proto.SetGoal, Mode: 1}); err != nil {
			t.Fatal(err)
		}
	}
	c.waitFor(20*time.Second, "extra copies dropped", func() bool {
		info, err := cl.Info(ctx)
		return err == nil && info.Chunks.Overgoal == 0 && info.Chunks.OK == 4 && info.Chunks.States.Valid == 4
	})
}

// Queued writes (write-back) land in order where they overlap, are visible
// to this client's reads at once, and Sync reports them done.
func TestWriteBackModel(t *testing.T) {
	c := newCluster(t, 3, nil)
	cl := c.client()
	ctx := t.Context()
	const size = 3 << 20
	model := randomBytes(size)
	a := writeFile(t, cl, "f", model)
	rng := rand.New(rand.NewPCG(11, 12))
	for i := 0; i < 2000; i++ {
		n := 1 + rng.IntN(16<<10)
		off := rng.IntN(size + 64<<10 - n) // some writes grow the file
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if err := cl.WriteAtAsync(ctx, a.Ino, p, int64(off)); err != nil {
			t.Fatal(err)
		}
		if off+n > len(model) {
			model = append(model, make([]byte, off+n-len(model))...)
		}
		copy(model[off:], p)
		if i%500 == 499 {
			got := make([]byte, len(model))
			if k, err := cl.ReadAt(ctx, a.Ino, got, 0); err != nil || k != len(model) || !bytes.Equal(got, model) {
				t.Fatalf("after %d queued writes: read %d of %d bytes, %v; equal %v", i+1, k, len(model), err, bytes.Equal(got, model))
			}
		}
	}
	if err := cl.Sync(ctx, a.Ino); err != nil {
		t.Fatal(err)
	}
	other := c.client() // a second client sees it all after Sync
	got := make([]byte, len(model))
	if k, err := other.ReadAt(ctx, a.Ino, got, 0); err != nil || k != len(model) || !bytes.Equal(got, model) {
		t.Fatalf("second client after Sync: read %d of %d bytes, %v", k, len(model), err)
	}
}

// Large queued writes are sent in parallel, several into one new chunk at
// once (which must be allocated once) and across chunks, and read back whole.
func TestSeqWriteBack(t *testing.T) {
	c := newCluster(t, 3, nil)
	cl := c.client()
	ctx := t.Context()
	a, err := cl.Create(ctx, 1, "f", regular(0o644))
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(80 << 20)
	for off := 0; off < len(data); off += 8 << 20 {
		if err := cl.WriteAtAsync(ctx, a.Ino, data[off:off+8<<20], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Sync(ctx, a.Ino); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	n, err := cl.ReadAt(ctx, a.Ino, got, 0)
	if err != nil || n != len(data) {
		t.Fatalf("read %d, %v", n, err)
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if !bytes.Equal(got[off:off+1<<20], data[off:off+1<<20]) {
			t.Errorf("MiB %d differs", off>>20)
		}
	}
}
