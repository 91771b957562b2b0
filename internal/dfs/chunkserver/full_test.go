package chunkserver

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rampart-storage/rampart/internal/testutil"
)

// fillUntilENOSPC writes 1 MiB pieces of pseudo-random data to new chunks
// until a write fails; it returns what was acknowledged per chunk and the
// failing error.
func fillUntilENOSPC(t *testing.T, s *Store) (map[uint64][]byte, error) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	held := map[uint64][]byte{}
	for id := uint64(1); id < 1000; id++ {
		for off := 0; off < 4<<20; off += 1 << 20 {
			p := make([]byte, 1<<20)
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			if err := s.WriteAt(id, 1, p, int64(off)); err != nil {
				// The refused range must read back as before: zeros, CRCs valid.
				if c, gerr := s.get(id, 1); gerr == nil {
					got := make([]byte, len(p))
					if rerr := c.ReadAt(got, int64(off)); rerr != nil || !bytes.Equal(got, make([]byte, len(p))) {
						t.Errorf("chunk %d range %d refused with %v: reads %v, zeros %v", id, off, err, rerr, bytes.Equal(got, make([]byte, len(p))))
					}
				}
				return held, err
			}
			held[id] = append(held[id], p...)
		}
	}
	t.Fatal("no ENOSPC after 1000 chunks")
	return nil, nil
}

func checkHeld(t *testing.T, s *Store, held map[uint64][]byte) {
	t.Helper()
	for id, want := range held {
		got := make([]byte, len(want))
		if err := s.ReadAt(id, 1, got, 0); err != nil || !bytes.Equal(got, want) {
			t.Errorf("chunk %d after ENOSPC: %v, data equal %v", id, err, bytes.Equal(got, want))
		}
	}
}

// A store with a capacity answers ENOSPC when it is reached; every chunk
// still reads back what was acknowledged, CRCs intact.
func TestCapacityENOSPC(t *testing.T) {
	s, err := OpenStore([]string{t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetCapacity(10 << 20)
	held, err := fillUntilENOSPC(t, s)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the store: got %v, want ENOSPC", err)
	}
	checkHeld(t, s, held)
	if _, free := s.Space(); free > 1<<20 {
		t.Errorf("free space at ENOSPC: %d bytes", free)
	}
}

// The same on a real full file system (a 12 MiB tmpfs, so root and
// RAMPART_ROOT_TESTS=1): fallocate refuses
// the range before any of it is written.
func TestTmpfsENOSPC(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=12m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	s, err := OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	held, err := fillUntilENOSPC(t, s)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: got %v, want ENOSPC", err)
	}
	checkHeld(t, s, held)
}
