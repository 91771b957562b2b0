package chunkserver

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// TestWriteBufferAligned: a large ChunkWrite is read into a buffer where its
// data starts on a directAlign boundary, whatever the chain; small writes
// and other requests are left to the connection to allocate.
func TestWriteBufferAligned(t *testing.T) {
	for _, chain := range [][]string{nil, {"127.0.0.1:9422"}, {"a:1", "host-b:19422", "c:3"}} {
		m := proto.ChunkWrite{ID: 1, Version: 1, Chain: chain, Data: make([]byte, 4<<20)}
		var e proto.Enc
		m.EncodeHead(&e)
		head := append(e.B, make([]byte, proto.PeekSize)...)[:proto.PeekSize]
		n := len(e.B) + len(m.Data)
		buf, put := writeBuffer(proto.Header{Type: proto.MsgChunkWrite, Length: uint32(n)}, head)
		if len(buf) != n || put == nil {
			t.Fatalf("chain %q: got a buffer of %d bytes, want %d and a release", chain, len(buf), n)
		}
		if !isAligned(buf[len(e.B):]) {
			t.Errorf("chain %q: data at an unaligned address", chain)
		}
		put()
	}
	for _, h := range []proto.Header{
		{Type: proto.MsgChunkWrite, Length: 4096},
		{Type: proto.MsgChunkRead, Length: 1 << 20},
	} {
		if buf, put := writeBuffer(h, make([]byte, 64)); buf != nil || put != nil {
			t.Errorf("%s of %d bytes: got a pooled buffer, want none", h.Type, h.Length)
		}
	}
}

// TestConcurrentLargeWrites: large chained writes in flight together, each
// read into a pooled buffer that goes back once it is answered, land intact
// on every replica (a buffer reused too early would mix their data).
func TestConcurrentLargeWrites(t *testing.T) {
	srv := startServers(t, 3)
	ctx := t.Context()
	c := dialServer(t, srv[0])
	type write struct {
		id   uint64
		off  uint32
		data []byte
	}
	var writes []write
	for i := range 24 {
		n := []int{4 << 20, 1<<20 + 4096, 300 << 10}[i%3]
		off := uint32(i%4) * (4 << 20)
		if i%3 == 2 {
			off += 100 // unaligned: the direct write goes through a copy
		}
		writes = append(writes, write{id: uint64(100 + i/4), off: off, data: bytes.Repeat([]byte{byte(i + 1)}, n)})
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(writes))
	for _, w := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var e proto.Enc
			(&proto.ChunkWrite{ID: w.id, Version: 1, Offset: w.off, Chain: []string{srv[1].Addr()}, Data: w.data}).EncodeHead(&e)
			if _, err := c.CallParts(ctx, proto.MsgChunkWrite, e.B, w.data); err != nil {
				errs <- fmt.Errorf("write chunk %d at %d: %w", w.id, w.off, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, w := range writes {
		for r, s := range srv[:2] {
			got := make([]byte, len(w.data))
			if err := s.Store().ReadAt(w.id, 1, got, int64(w.off)); err != nil || !bytes.Equal(got, w.data) {
				t.Errorf("replica %d chunk %d at %d: err %v or other data, want %d bytes of %#x", r, w.id, w.off, err, len(w.data), w.data[0])
			}
		}
	}
}
