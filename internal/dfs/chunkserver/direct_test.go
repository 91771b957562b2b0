package chunkserver

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"testing"
)

// TestDirectMixedModel mixes large aligned writes (O_DIRECT where the file
// system takes it) with small unaligned buffered ones and reads of both
// kinds, against a model, then again after reopening the store; a flipped
// byte in a directly written block is still caught by its CRC.
func TestDirectMixedModel(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	const span = 12 << 20
	model := make([]byte, span)
	rng := rand.New(rand.NewPCG(3, 4))
	fill := func(p []byte) {
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
	}
	check := func(step int, s *Store) {
		roff := rng.IntN(span)
		n := 1 + rng.IntN(span-roff)
		if rng.IntN(2) == 0 { // an aligned large read: direct
			roff = rng.IntN(span/directMin-16) * directMin
			n = (1 + rng.IntN(16)) * directMin
		}
		n = min(n, 4<<20)
		got := make([]byte, n)
		if err := s.ReadAt(9, 1, got, int64(roff)); err != nil {
			t.Fatalf("step %d: read %d@%d: %v", step, n, roff, err)
		}
		if !bytes.Equal(got, model[roff:roff+n]) {
			t.Fatalf("step %d: read %d@%d differs from the model", step, n, roff)
		}
	}
	for i := 0; i < 150; i++ {
		var off, n int
		if rng.IntN(2) == 0 {
			n = (1 + rng.IntN(16)) * directMin
			off = rng.IntN((span-n)/directAlign) * directAlign
		} else {
			n = 1 + rng.IntN(3*BlockSize)
			off = rng.IntN(span - n)
		}
		p := make([]byte, n)
		fill(p)
		if err := s.WriteAt(9, 1, p, int64(off)); err != nil {
			t.Fatalf("write %d@%d: %v", n, off, err)
		}
		copy(model[off:], p)
		check(i, s)
	}
	c, err := s.get(9, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	used := c.dtried && c.dfd >= 0
	c.mu.Unlock()
	t.Logf("O_DIRECT in use: %v", used)
	s.Close()

	s, err = OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 50; i++ {
		check(1000+i, s)
	}
	whole := make([]byte, 4<<20)
	for off := 0; off < span; off += len(whole) {
		if err := s.ReadAt(9, 1, whole, int64(off)); err != nil || !bytes.Equal(whole, model[off:off+len(whole)]) {
			t.Fatalf("after reopen: %d@%d differs (%v)", len(whole), off, err)
		}
	}

	// A direct write, then a flipped byte behind the store's back.
	p := make([]byte, 1<<20)
	fill(p)
	if err := s.WriteAt(9, 1, p, 2<<20); err != nil {
		t.Fatal(err)
	}
	c, _ = s.get(9, 1)
	f, err := os.OpenFile(c.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{p[5000] ^ 0xff}, HeaderSize+2<<20+5000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := s.ReadAt(9, 1, whole[:1<<20], 2<<20); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a flipped byte: %v, want ErrCorrupt", err)
	}
}
