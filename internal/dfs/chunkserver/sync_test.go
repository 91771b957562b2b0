package chunkserver

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// TestStaleWritesRefused: a write for a version other than the one held,
// or for a deleted chunk, fails with ESTALE and changes nothing; an
// explicit Create (a new placement) lifts the refusal.
func TestStaleWritesRefused(t *testing.T) {
	s, err := OpenStore([]string{t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	data := bytes.Repeat([]byte{7}, 4096)
	if err := s.WriteAt(1, 1, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetVersion(1, 1, 2); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		id      uint64
		version uint32
	}{
		{"older version than held", 1, 1},
		{"newer version than held", 1, 3},
	} {
		if err := s.WriteAt(tt.id, tt.version, []byte("x"), 0); !errors.Is(err, syscall.ESTALE) {
			t.Errorf("%s: got %v, want ESTALE", tt.name, err)
		}
	}
	got := make([]byte, len(data))
	if err := s.ReadAt(1, 2, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("held copy after refused writes: %v (data intact %v)", err, bytes.Equal(got, data))
	}
	// Deleted: a late write must not create the chunk again.
	if err := s.Delete(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(1, 2, data, 0); !errors.Is(err, syscall.ESTALE) {
		t.Errorf("write to a deleted chunk: got %v, want ESTALE", err)
	}
	// Deleted before its first write reached this server (ChunkDelete any version).
	if err := s.Delete(5, 0); !errors.Is(err, ErrNoChunk) {
		t.Fatalf("delete of an absent chunk: %v", err)
	}
	if err := s.WriteAt(5, 1, data, 0); !errors.Is(err, syscall.ESTALE) {
		t.Errorf("first write of a chunk deleted before it: got %v, want ESTALE", err)
	}
	if _, ok := s.Chunks()[5]; ok {
		t.Error("a refused write created the chunk")
	}
	// A new chunk is still created by its first write, and a new placement
	// of a deleted one by Create.
	if err := s.WriteAt(6, 1, data, 0); err != nil {
		t.Errorf("first write of a new chunk: %v", err)
	}
	if err := s.Create(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(1, 2, data, 0); err != nil {
		t.Errorf("write after a new placement: %v", err)
	}
}

// TestSyncCoversWrites: Sync fdatasyncs a chunk written since its last
// sync (and its folder once), skips one with nothing new, refuses a copy
// older than asked, and reports the disk's error.
func TestSyncCoversWrites(t *testing.T) {
	s, err := OpenStore([]string{t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var hooked atomic.Int64
	var fail atomic.Bool
	s.SetSyncHook(func(uint64, uint32) error {
		hooked.Add(1)
		if fail.Load() {
			return syscall.EIO
		}
		return nil
	})
	if err := s.WriteAt(9, 1, []byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if s.Durable(9) {
		t.Fatal("durable before any sync")
	}
	if err := s.Sync(9, 1); err != nil {
		t.Fatal(err)
	}
	if !s.Durable(9) || hooked.Load() != 1 || s.Syncs() != 1 {
		t.Fatalf("after Sync: durable %v, hook calls %d, syncs %d; want true, 1, 1", s.Durable(9), hooked.Load(), s.Syncs())
	}
	if err := s.Sync(9, 1); err != nil || hooked.Load() != 1 {
		t.Fatalf("Sync with nothing new: %v, hook calls %d; want no fdatasync", err, hooked.Load())
	}
	// Concurrent syncs after one write share fdatasyncs.
	if err := s.WriteAt(9, 1, []byte("again"), 100); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Sync(9, 1); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := hooked.Load(); n != 2 {
		t.Errorf("16 concurrent syncs of one write: %d fdatasyncs in all, want 2", n)
	}
	// A version move keeps the data: asking for the old version is fine,
	// asking for a newer one is not.
	if err := s.SetVersion(9, 1, 2); err != nil {
		t.Fatal(err)
	}
	if !s.Durable(9) {
		t.Error("a version move is not durable when SetVersion returns")
	}
	if err := s.Sync(9, 1); err != nil {
		t.Errorf("sync of v1 held at v2: %v", err)
	}
	if err := s.Sync(9, 3); !errors.Is(err, ErrNoChunk) {
		t.Errorf("sync of v3 held at v2: got %v, want ErrNoChunk", err)
	}
	if err := s.WriteAt(9, 2, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if err := s.Sync(9, 2); !errors.Is(err, syscall.EIO) {
		t.Errorf("sync on a failing disk: got %v, want EIO", err)
	}
	if s.Durable(9) {
		t.Error("durable after a failed sync")
	}
}

// TestChunkSyncMessage: a ChunkSync answers one errno per chunk.
func TestChunkSyncMessage(t *testing.T) {
	srv := startServers(t, 1)[0]
	if err := srv.Store().WriteAt(3, 1, []byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	var e proto.Enc
	(&proto.ChunkSync{Chunks: []proto.ChunkRef{{ID: 3, Version: 1}, {ID: 4, Version: 1}}}).Encode(&e)
	b, err := srv.handle(t.Context(), &proto.Frame{Type: proto.MsgChunkSync, Payload: e.B})
	if err != nil {
		t.Fatal(err)
	}
	var r proto.ChunkSyncReply
	if err := r.Decode(b); err != nil {
		t.Fatal(err)
	}
	if len(r.Errnos) != 2 || r.Errnos[0] != 0 || r.Errnos[1] != uint32(syscall.ENOENT) {
		t.Fatalf("ChunkSync reply %v, want [0 ENOENT]", r.Errnos)
	}
	if !srv.Store().Durable(3) {
		t.Error("chunk not durable after ChunkSync")
	}
	// The folder holding a new chunk file was synced once.
	dirs := 0
	filepath.Walk(srv.cfg.Data[0], func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() && p != srv.cfg.Data[0] && p != freeFiles(srv.cfg.Data[0]) {
			dirs++
		}
		return nil
	})
	if n := len(srv.Store().dirsSynced); n != dirs {
		t.Errorf("%d chunk folders synced in their parent, want %d", n, dirs)
	}
}
