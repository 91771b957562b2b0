package blockdev_test

import (
	"bytes"
	"sync"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

func TestUnalignedReadWrite(t *testing.T) {
	u := &blockdev.Unaligned{Dev: blockdev.NewMem(1<<20, 512)}
	ref := make([]byte, 1<<20)
	tests := []struct {
		off int64
		n   int
	}{{0, 512}, {1000, 3000}, {10, 20}, {511, 2}, {4096, 8192}, {1<<20 - 7, 7}}
	for i, tc := range tests {
		p := bytes.Repeat([]byte{byte(i + 1)}, tc.n)
		if n, err := u.WriteAt(p, tc.off, i%2 == 0); err != nil || n != tc.n {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", tc.n, tc.off, n, err)
		}
		copy(ref[tc.off:], p)
	}
	got := make([]byte, len(ref))
	if _, err := u.ReadAt(got, 0); err != nil || !bytes.Equal(got, ref) {
		t.Fatalf("device differs from the reference after unaligned writes (err %v)", err)
	}
	part := make([]byte, 33)
	if _, err := u.ReadAt(part, 999); err != nil || !bytes.Equal(part, ref[999:1032]) {
		t.Errorf("unaligned read 999+33 = % x, want % x", part, ref[999:1032])
	}
}

// TestUnalignedConcurrentPartialWrites: many writers each own some bytes of the same
// block; no write may lose another's bytes.
func TestUnalignedConcurrentPartialWrites(t *testing.T) {
	u := &blockdev.Unaligned{Dev: blockdev.NewMem(1<<20, 512)}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				u.WriteAt(bytes.Repeat([]byte{byte(w + 1)}, 8), int64(100+w*8), false)
			}
		}()
	}
	wg.Wait()
	got := make([]byte, 128)
	u.ReadAt(got, 100)
	for w := range 16 {
		if !bytes.Equal(got[w*8:w*8+8], bytes.Repeat([]byte{byte(w + 1)}, 8)) {
			t.Errorf("writer %d's bytes lost: % x", w, got[w*8:w*8+8])
		}
	}
}
