package chunkserver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

func TestChunkWriteReadModel(t *testing.T) {
	s, err := OpenStore([]string{t.TempDir(), t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	const span = 4*BlockSize + 1000
	model := make([]byte, span)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		off := rng.IntN(span - 1)
		n := 1 + rng.IntN(min(span-off, 3*BlockSize))
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if err := s.WriteAt(7, 1, p, int64(off)); err != nil {
			t.Fatalf("write %d@%d: %v", n, off, err)
		}
		copy(model[off:], p)
		roff := rng.IntN(span)
		got := make([]byte, rng.IntN(span-roff)+1)
		if roff+len(got) > span {
			got = got[:span-roff]
		}
		if err := s.ReadAt(7, 1, got, int64(roff)); err != nil {
			t.Fatalf("read %d@%d: %v", len(got), roff, err)
		}
		if !bytes.Equal(got, model[roff:roff+len(got)]) {
			t.Fatalf("step %d: read %d@%d differs from model", i, len(got), roff)
		}
	}
	// Past the written data, a chunk reads as zeros.
	tail := make([]byte, 100)
	if err := s.ReadAt(7, 1, tail, ChunkSize-100); err != nil || !bytes.Equal(tail, make([]byte, 100)) {
		t.Errorf("tail read: got %v, want zeros and nil error", err)
	}
}

func TestChunkCorruptionAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("rampart!"), 2*BlockSize/8)
	if err := s.WriteAt(9, 3, data, 0); err != nil {
		t.Fatal(err)
	}
	path := s.chunks[9].path
	s.Close()

	s, err = OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Chunks(); got[9] != 3 {
		t.Fatalf("after reopen: got chunks %v, want 9 at v3", got)
	}
	got := make([]byte, len(data))
	if err := s.ReadAt(9, 3, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after reopen: %v", err)
	}
	if err := s.ReadAt(9, 2, got, 0); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("read stale version: got %v, want ENOENT", err)
	}
	s.Close()

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{'X'}, HeaderSize+BlockSize+5)
	f.Close()
	s, err = OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.ReadAt(9, 3, got[:10], 0); err != nil {
		t.Errorf("read of intact block 0: got %v, want nil", err)
	}
	if err := s.ReadAt(9, 3, got[:10], BlockSize); !errors.Is(err, ErrCorrupt) {
		t.Errorf("read of damaged block 1: got %v, want ErrCorrupt", err)
	}
}

func startServers(t *testing.T, n int) []*Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var out []*Server
	for i := 0; i < n; i++ {
		s, err := New(Config{Data: []string{t.TempDir()}, Listen: "127.0.0.1:0", Log: log})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		<-s.Ready()
		t.Cleanup(func() { s.Close() })
		out = append(out, s)
	}
	return out
}

// dialServer connects a client to a test chunkserver until the test ends.
func dialServer(t *testing.T, s *Server) *proto.Client {
	t.Helper()
	c, err := proto.Dial(t.Context(), s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestChainedWrite(t *testing.T) {
	srv := startServers(t, 3)
	ctx := t.Context()
	c := dialServer(t, srv[0])
	data := bytes.Repeat([]byte{0xab}, 1<<20)
	var e proto.Enc
	(&proto.ChunkWrite{ID: 5, Version: 1, Offset: 4096, Chain: []string{srv[1].Addr(), srv[2].Addr()}, Data: data}).Encode(&e)
	if _, err := c.Call(ctx, proto.MsgChunkWrite, e.B); err != nil {
		t.Fatalf("chained write: %v", err)
	}
	for i, s := range srv {
		got := make([]byte, len(data))
		if err := s.Store().ReadAt(5, 1, got, 4096); err != nil || !bytes.Equal(got, data) {
			t.Errorf("replica %d: got err %v or different data, want the written data", i, err)
		}
	}
	// Read over the wire.
	e = proto.Enc{}
	(&proto.ChunkRead{ID: 5, Version: 1, Offset: 4096, Length: 100}).Encode(&e)
	got, err := c.Call(ctx, proto.MsgChunkRead, e.B)
	if err != nil || !bytes.Equal(got, data[:100]) {
		t.Errorf("wire read: got %d bytes, %v; want 100 bytes of 0xab", len(got), err)
	}

	// A dead replica in the chain fails the write: it is never acknowledged
	// unless every replica holds it.
	srv[2].Close()
	e = proto.Enc{}
	(&proto.ChunkWrite{ID: 5, Version: 1, Offset: 0, Chain: []string{srv[1].Addr(), srv[2].Addr()}, Data: data[:10]}).Encode(&e)
	if _, err := c.Call(ctx, proto.MsgChunkWrite, e.B); err == nil {
		t.Errorf("write through a dead replica: got nil error, want failure")
	}
	// A malformed request gets an error reply and the connection stays usable.
	if _, err := c.Call(ctx, proto.MsgChunkWrite, []byte{1, 2, 3}); !errors.Is(err, syscall.EIO) {
		t.Errorf("malformed write: got %v, want an EIO error reply", err)
	}
	if _, err := c.Call(ctx, proto.MsgChunkRead, e.B[:0]); err == nil {
		t.Errorf("empty read request: got nil error, want failure")
	}
}

func FuzzDecodeHeader(f *testing.F) {
	f.Add(EncodeHeader(Header{ID: 1, Version: 2})[:64])
	f.Fuzz(func(t *testing.T, b []byte) {
		full := make([]byte, HeaderSize)
		copy(full, b)
		h, crcs, err := DecodeHeader(full)
		if err == nil && len(crcs) != NumBlocks {
			t.Fatalf("header %+v with %d crcs, want %d", h, len(crcs), NumBlocks)
		}
		_, _, _ = DecodeHeader(b)
	})
}

func TestSetVersion(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(4, 1, []byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetVersion(4, 1, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.ReadAt(4, 1, make([]byte, 4), 0); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("read old version: got %v, want ENOENT", err)
	}
	s.Close()
	s, err = OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	got := make([]byte, 4)
	if err := s.ReadAt(4, 2, got, 0); err != nil || string(got) != "data" {
		t.Errorf("read new version after reopen: got %q, %v; want data", got, err)
	}
}
