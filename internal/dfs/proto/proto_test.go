package proto

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []Frame{
		{Type: MsgChunkRead, ID: 1},
		{Type: MsgChunkWrite, ID: 0xffffffff, Flags: FlagReply, Payload: []byte("hello")},
		{Type: MsgType(0x7777), ID: 7, Flags: FlagReply | FlagError, Payload: make([]byte, 70000)},
	}
	for _, in := range tests {
		var buf bytes.Buffer
		if err := WriteFrame(&buf, &in); err != nil {
			t.Fatalf("WriteFrame(%s): %v", in.Type, err)
		}
		out, err := ReadFrame(&buf)
		if err != nil {
			t.Fatalf("ReadFrame(%s): %v", in.Type, err)
		}
		if out.Type != in.Type || out.ID != in.ID || out.Flags != in.Flags || !bytes.Equal(out.Payload, in.Payload) {
			t.Errorf("got %+v, want %+v", out, in)
		}
	}
}

func TestParseHeaderRejects(t *testing.T) {
	good := make([]byte, HeaderSize)
	PutHeader(good, Header{Type: MsgChunkRead, Length: 10, ID: 3})
	tests := []struct {
		name string
		mod  func(b []byte) []byte
		want error
	}{
		{"short", func(b []byte) []byte { return b[:5] }, ErrShort},
		{"magic", func(b []byte) []byte { b[0] = 0; return b }, ErrBadMagic},
		{"version", func(b []byte) []byte { b[1] = 9; return b }, ErrVersion},
		{"length", func(b []byte) []byte { b[8] = 0xff; return b }, ErrTooLarge},
	}
	for _, tt := range tests {
		b := tt.mod(append([]byte(nil), good...))
		if _, err := ParseHeader(b); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := ParseHeader(good); err != nil {
		t.Errorf("good header: got %v, want nil", err)
	}
}

func TestChunkWriteRoundTrip(t *testing.T) {
	in := ChunkWrite{ID: 42, Version: 3, Offset: 65536, Chain: []string{"a:1", "b:2"}, Data: []byte("xyz")}
	var e Enc
	in.Encode(&e)
	var out ChunkWrite
	if err := out.Decode(e.B); err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || out.Version != in.Version || out.Offset != in.Offset ||
		len(out.Chain) != 2 || out.Chain[1] != "b:2" || string(out.Data) != "xyz" {
		t.Errorf("got %+v, want %+v", out, in)
	}
	for i := range e.B {
		if err := out.Decode(e.B[:i]); !errors.Is(err, ErrShort) {
			t.Errorf("truncated to %d: got %v, want ErrShort", i, err)
		}
	}
	if err := out.Decode(append(e.B, 0)); !errors.Is(err, ErrTrailing) {
		t.Errorf("trailing byte: got %v, want ErrTrailing", err)
	}
}

func TestClientServer(t *testing.T) {
	ln, ctx, log := testListener(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go ServeConn(ctx, c, func(ctx context.Context, f *Frame) ([]byte, error) {
				if f.Type == MsgChunkDelete {
					return nil, syscall.ENOENT
				}
				return append([]byte("re:"), f.Payload...), nil
			}, log)
		}
	}()
	c, err := Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := []byte{byte(i)}
			got, err := c.Call(ctx, MsgChunkRead, p)
			if err != nil || !bytes.Equal(got, append([]byte("re:"), p...)) {
				t.Errorf("call %d: got %q, %v, want re:%q", i, got, err, p)
			}
		}(i)
	}
	wg.Wait()
	_, err = c.Call(ctx, MsgChunkDelete, nil)
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("error reply: got %v, want ENOENT", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteFrame(&buf, &Frame{Type: MsgChunkRead, ID: 1, Payload: []byte("abc")})
	f.Add(buf.Bytes())
	f.Add([]byte{0xdf, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ReadFrame(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(fr.Payload) > MaxPayload {
			t.Fatalf("payload of %d bytes accepted", len(fr.Payload))
		}
	})
}

func FuzzDecodeMessages(f *testing.F) {
	var e Enc
	(&ChunkWrite{ID: 1, Chain: []string{"x"}, Data: []byte("d")}).Encode(&e)
	f.Add(e.B)
	f.Add([]byte{0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'})
	for _, m := range []interface{ Encode(*Enc) }{
		&ChunkList{Chunks: []ChunkRef{{ID: 7, Version: 2}}},
		&BadChunk{Addr: "127.0.0.1:9422", ID: 9, Version: 1, Block: 3},
		&SessionOp{Session: 1, Seq: 2, Type: MsgCreate, Payload: []byte("p")},
	} {
		var e Enc
		m.Encode(&e)
		f.Add(e.B)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var w ChunkWrite
		if w.Decode(b) == nil {
			var e Enc
			w.Encode(&e)
			if !bytes.Equal(e.B, b) {
				t.Fatalf("ChunkWrite re-encodes to %x, want %x", e.B, b)
			}
		}
		var r ChunkRead
		_ = r.Decode(b)
		var ref ChunkRef
		_ = ref.Decode(b)
		var er ErrorReply
		_ = er.Decode(b)
		var loc ChunkLoc
		if loc.Decode(b) == nil {
			var e Enc
			loc.Encode(&e)
			if !bytes.Equal(e.B, b) {
				t.Fatalf("ChunkLoc re-encodes to %x, want %x", e.B, b)
			}
		}
		var reg Register
		_ = reg.Decode(b)
		var cl ChunkList
		if cl.Decode(b) == nil && len(b) > 0 {
			var e Enc
			cl.Encode(&e)
			if !bytes.Equal(e.B, b) {
				t.Fatalf("ChunkList re-encodes to %x, want %x", e.B, b)
			}
		}
		var bc BadChunk
		if bc.Decode(b) == nil {
			var e Enc
			bc.Encode(&e)
			if !bytes.Equal(e.B, b) {
				t.Fatalf("BadChunk re-encodes to %x, want %x", e.B, b)
			}
		}
		var so SessionOp
		if so.Decode(b) == nil {
			var e Enc
			so.Encode(&e)
			if !bytes.Equal(e.B, b) {
				t.Fatalf("SessionOp re-encodes to %x, want %x", e.B, b)
			}
		}
	})
}

// testListener listens on a loopback port for a test server; the listener
// closes and the context ends with the test.
func testListener(t *testing.T) (net.Listener, context.Context, *slog.Logger) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ln, ctx, slog.New(slog.NewTextHandler(io.Discard, nil))
}
