package proto

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// TestChunkWriteDataOffset: the offset found from the head of an encoded
// ChunkWrite is where Decode's Data starts, for chains of 0 to 3 servers;
// a head cut before the data's length field is refused.
func TestChunkWriteDataOffset(t *testing.T) {
	for _, chain := range [][]string{nil, {"10.0.0.2:9422"}, {"a:1", "bb:2", "ccc:3"}} {
		m := ChunkWrite{ID: 0x1234, Version: 3, Offset: 1 << 20, Chain: chain, Data: bytes.Repeat([]byte{7}, 5000)}
		var e Enc
		m.Encode(&e)
		off, ok := ChunkWriteDataOffset(e.B[:min(len(e.B), PeekSize)])
		if want := len(e.B) - len(m.Data); !ok || off != want {
			t.Errorf("chain %q: got offset %d, %v, want %d, true", chain, off, ok, want)
		}
		if _, ok := ChunkWriteDataOffset(e.B[:len(e.B)-len(m.Data)-1]); ok {
			t.Errorf("chain %q: a head without the whole data length field was accepted", chain)
		}
	}
}

func FuzzChunkWriteDataOffset(f *testing.F) {
	var e Enc
	(&ChunkWrite{ID: 1, Chain: []string{"x"}, Data: []byte("data")}).Encode(&e)
	f.Add(e.B, uint16(len(e.B)))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 17, 0xff, 0xff, 0xff, 0xff}, uint16(21))
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		head := b[:min(len(b), int(cut))]
		off, ok := ChunkWriteDataOffset(head)
		if !ok {
			return
		}
		if off < 0 || off > len(head) {
			t.Fatalf("offset %d outside a head of %d bytes", off, len(head))
		}
		var m ChunkWrite
		if err := m.Decode(b); err != nil {
			return
		}
		if want := len(b) - len(m.Data); off != want {
			t.Fatalf("offset %d, Decode's data starts at %d", off, want)
		}
	})
}

// TestServeBuffer: with ServeOptions.Buffer the payload is read into the
// buffer it gives, at the place it chose; release comes once the reply is
// written; a buffer of the wrong length is given back and the payload
// allocated instead.
func TestServeBuffer(t *testing.T) {
	ln, ctx, log := testListener(t)

	var mu sync.Mutex
	backing := make([]byte, 1<<16)
	released := 0
	var heads []string
	release := func() {
		mu.Lock()
		released++
		mu.Unlock()
	}
	buffer := func(h Header, head []byte) ([]byte, func()) {
		mu.Lock()
		defer mu.Unlock()
		heads = append(heads, string(head))
		if h.Type == MsgChunkInfo {
			return make([]byte, h.Length+1), release // wrong length
		}
		return backing[100 : 100+h.Length], release
	}
	h := func(ctx context.Context, f *Frame) ([]byte, error) {
		inBacking := len(f.Payload) > 0 && &f.Payload[0] == &backing[100]
		mu.Lock()
		r := released
		mu.Unlock()
		if f.Type == MsgChunkRead && (!inBacking || r != 0) {
			t.Errorf("ChunkRead payload in the given buffer: %v, releases before the reply: %d", inBacking, r)
		}
		if f.Type == MsgChunkInfo && inBacking {
			t.Errorf("ChunkInfo payload in the given buffer")
		}
		return append([]byte(nil), f.Payload...), nil
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		ServeConnWith(ctx, c, h, ServeOptions{Buffer: buffer}, log)
	}()
	c, err := Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	long := bytes.Repeat([]byte("x"), 2*PeekSize)
	got, err := c.Call(ctx, MsgChunkRead, long)
	if err != nil || !bytes.Equal(got, long) {
		t.Fatalf("ChunkRead echo: got %d bytes, %v, want %d bytes", len(got), err, len(long))
	}
	got, err = c.Call(ctx, MsgChunkInfo, []byte("info"))
	if err != nil || string(got) != "info" {
		t.Fatalf("ChunkInfo echo: got %q, %v, want \"info\"", got, err)
	}
	// The release of the last request may run just after its reply left.
	c.Close()
	for i := 0; i < 1000; i++ {
		mu.Lock()
		r := released
		mu.Unlock()
		if r == 2 {
			break
		}
		if i == 999 {
			t.Fatalf("releases: got %d, want 2", r)
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(heads) != 2 || len(heads[0]) != PeekSize || heads[1] != "info" {
		t.Errorf("heads shown: got %d (lengths), want a %d-byte head and \"info\"", len(heads), PeekSize)
	}
}
