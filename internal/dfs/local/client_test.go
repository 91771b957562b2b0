package local_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/local"
	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

func startCluster(t *testing.T, dir string) (*local.Cluster, *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cl, err := local.Start(ctx, local.Config{Dir: dir, Heartbeat: 100 * time.Millisecond, HeartbeatTimeout: time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, cl.Master.ClientAddr())
	if err != nil {
		cl.Close()
		t.Fatal(err)
	}
	return cl, c
}

func randomData(n int) []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func TestWriteReadAcrossChunksAndRestart(t *testing.T) {
	dir := t.TempDir()
	cl, c := startCluster(t, dir)
	ctx := t.Context()

	d, err := c.Create(ctx, meta.RootIno, "www", meta.Node{Mode: syscall.S_IFDIR | 0o755})
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Create(ctx, d.Ino, "big", meta.Node{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	data := randomData(meta.ChunkSize + 3<<20 + 123) // crosses into a second chunk
	const step = 1 << 20
	for off := 0; off < len(data); off += step {
		if err := c.WriteAt(ctx, f.Ino, data[off:min(off+step, len(data))], int64(off)); err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
	}
	got := make([]byte, len(data)+100)
	n, err := c.ReadAt(ctx, f.Ino, got, 0)
	if err != nil || n != len(data) || sha256.Sum256(got[:n]) != sha256.Sum256(data) {
		t.Fatalf("read back: %d bytes, %v; want %d bytes with the same checksum", n, err, len(data))
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Chunks.Total != 2 || info.Chunks.OK != 2 || info.Chunks.Copies != 4 || len(info.Servers) != 3 {
		t.Errorf("info: got %+v, want 2 chunks with 2 copies each on 3 servers", info.Chunks)
	}

	// Lose one chunkserver: every chunk is still readable from its other copy.
	cl.Chunkservers[0].Close()
	n, err = c.ReadAt(ctx, f.Ino, got, 0)
	if err != nil || !bytes.Equal(got[:n], data) {
		t.Fatalf("read with one chunkserver down: %d bytes, %v", n, err)
	}

	// Restart everything: the namespace, sizes and chunk map survive.
	c.Close()
	cl.Close()
	cl, c = startCluster(t, dir)
	t.Cleanup(func() { c.Close(); cl.Close() })
	f2, err := c.Lookup(ctx, d.Ino, "big")
	if err != nil || f2.Ino != f.Ino || f2.Size != uint64(len(data)) {
		t.Fatalf("after restart: got %+v, %v; want inode %d size %d", f2, err, f.Ino, len(data))
	}
	n, err = c.ReadAt(ctx, f.Ino, got, 0)
	if err != nil || !bytes.Equal(got[:n], data) {
		t.Fatalf("read after restart: %d bytes, %v", n, err)
	}
	ents, err := c.Readdir(ctx, meta.RootIno)
	if err != nil || len(ents) != 1 || ents[0].Name != "www" {
		t.Errorf("readdir root after restart: got %v, %v; want [www]", ents, err)
	}
	if err := c.Unlink(ctx, d.Ino, "big", false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, d.Ino, "big"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("lookup after unlink: got %v, want ENOENT", err)
	}
}

func TestWriteSurvivesChunkserverDeath(t *testing.T) {
	cl, c := startCluster(t, t.TempDir())
	t.Cleanup(func() { c.Close(); cl.Close() })
	ctx := t.Context()
	f, err := c.Create(ctx, meta.RootIno, "f", meta.Node{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	data := randomData(24 << 20)
	const step = 1 << 20
	killed := false
	for off := 0; off < len(data); off += step {
		if off == 8<<20 {
			// Kill a chunkserver holding the chunk in the middle of the write.
			for _, s := range cl.Chunkservers {
				if len(s.Store().Chunks()) > 0 {
					s.Close()
					killed = true
					break
				}
			}
		}
		if err := c.WriteAt(ctx, f.Ino, data[off:off+step], int64(off)); err != nil {
			t.Fatalf("write at %d after a chunkserver died: %v", off, err)
		}
	}
	if !killed {
		t.Fatal("no chunkserver held the chunk; the test would prove nothing")
	}
	got := make([]byte, len(data))
	if n, err := c.ReadAt(ctx, f.Ino, got, 0); err != nil || n != len(data) || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("read back: %d bytes, %v; want %d bytes with the same checksum", n, err, len(data))
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Chunks.Undergoal == 0 && info.Chunks.Missing == 0 && info.Chunks.OK == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chunks after the loss: got %+v, want 1 ok and 0 under goal", info.Chunks)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n, err := c.ReadAt(ctx, f.Ino, got, 0); err != nil || n != len(data) || !bytes.Equal(got, data) {
		t.Fatalf("read back after re-replication: %d bytes, %v", n, err)
	}
}

func TestReplicationRestoresGoal(t *testing.T) {
	cl, c := startCluster(t, t.TempDir())
	t.Cleanup(func() { c.Close(); cl.Close() })
	ctx := t.Context()
	data := randomData(5 << 20)
	for i := 0; i < 4; i++ {
		f, err := c.Create(ctx, meta.RootIno, string(rune('a'+i)), meta.Node{Mode: syscall.S_IFREG | 0o644})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteAt(ctx, f.Ino, data, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Lose a chunkserver that holds copies.
	if n := len(cl.Chunkservers[0].Store().Chunks()); n == 0 {
		t.Fatalf("chunkserver 0 holds no chunk; the test would prove nothing")
	}
	cl.Chunkservers[0].Close()
	deadline := time.Now().Add(15 * time.Second)
	var info *proto.Info
	var err error
	for time.Now().Before(deadline) {
		info, err = c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		live := 0
		for _, s := range info.Servers {
			if s.Live {
				live++
			}
		}
		if live == 2 && info.Chunks.Undergoal == 0 && info.Chunks.Missing == 0 && info.Chunks.OK == 4 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if info.Chunks.OK != 4 || info.Chunks.Undergoal != 0 {
		t.Fatalf("after losing a chunkserver: got %+v, want 4 chunks ok, 0 under goal", info.Chunks)
	}
	for i := 0; i < 4; i++ {
		a, err := c.Lookup(ctx, meta.RootIno, string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		if n, err := c.ReadAt(ctx, a.Ino, got, 0); err != nil || n != len(data) || !bytes.Equal(got, data) {
			t.Fatalf("file %d after re-replication: %d bytes, %v", i, n, err)
		}
	}
}
