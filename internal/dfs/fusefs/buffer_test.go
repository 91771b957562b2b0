package fusefs

import (
	"bytes"
	"testing"
)

// TestAppendPending checks the pending write buffer's growth: a small
// file's write holds a small buffer (not WriteBuffer bytes), a stream of
// writes grows it by doubling up to WriteBuffer, and the bytes come out in
// order.
func TestAppendPending(t *testing.T) {
	small := appendPending(nil, bytes.Repeat([]byte{1}, 4096))
	if len(small) != 4096 || cap(small) > 64<<10 {
		t.Errorf("one 4 KiB write: got len %d cap %d, want len 4096 cap at most 64 KiB", len(small), cap(small))
	}
	var buf, want []byte
	for i := 0; len(buf) < WriteBuffer; i++ {
		w := bytes.Repeat([]byte{byte(i)}, 1<<20)
		buf = appendPending(buf, w)
		want = append(want, w...)
		if cap(buf) > WriteBuffer {
			t.Fatalf("after %d MiB: cap %d, want at most WriteBuffer (%d)", i+1, cap(buf), WriteBuffer)
		}
	}
	if !bytes.Equal(buf, want) {
		t.Fatal("buffered bytes differ from the writes")
	}
	// A write larger than WriteBuffer still fits whole.
	big := appendPending(nil, make([]byte, WriteBuffer+1))
	if len(big) != WriteBuffer+1 {
		t.Errorf("oversized write: got len %d, want %d", len(big), WriteBuffer+1)
	}
}

// TestDropIdleBuffer checks that close frees an empty write buffer and keeps
// one holding data.
func TestDropIdleBuffer(t *testing.T) {
	n := &Node{buf: make([]byte, 0, 4096)}
	n.dropIdleBuffer()
	if n.buf != nil {
		t.Errorf("empty buffer after close: got cap %d, want freed", cap(n.buf))
	}
	n.buf = []byte("pending")
	n.dropIdleBuffer()
	if string(n.buf) != "pending" {
		t.Errorf("buffer with data after close: got %q, want kept", n.buf)
	}
}
