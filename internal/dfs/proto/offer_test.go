package proto

import (
	"bytes"
	"errors"
	"testing"
)

func TestWriteEndChunkRoundTrip(t *testing.T) {
	in := WriteEndChunk{Ino: 9, Size: 4096, Mtime: -3, Index: 0, ID: 77, Version: 1}
	var e Enc
	in.Encode(&e)
	var out WriteEndChunk
	if err := out.Decode(e.B); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("got %+v, want %+v", out, in)
	}
	for i := range e.B {
		if err := out.Decode(e.B[:i]); !errors.Is(err, ErrShort) {
			t.Fatalf("%d of %d bytes: got %v, want ErrShort", i, len(e.B), err)
		}
	}
	in.ID = 0
	e = Enc{}
	in.Encode(&e)
	if err := out.Decode(e.B); !errors.Is(err, ErrBadField) {
		t.Fatalf("chunk id 0: got %v, want ErrBadField", err)
	}
}

// FuzzDecodeWriteEndChunk: any payload decodes or is refused; what decodes
// re-encodes to the same bytes.
func FuzzDecodeWriteEndChunk(f *testing.F) {
	var e Enc
	(&WriteEndChunk{Ino: 2, Size: 4096, Mtime: 1, ID: 5, Version: 1}).Encode(&e)
	f.Add(e.B)
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m WriteEndChunk
		if m.Decode(b) != nil {
			return
		}
		var e Enc
		m.Encode(&e)
		if !bytes.Equal(e.B, b) {
			t.Fatalf("WriteEndChunk re-encodes to %x, want %x", e.B, b)
		}
	})
}
