// Package blockdevtest is the shared test suite every blockdev.Device implementation
// passes: reads return what was written, bounds and alignment are enforced, Flush and
// optional capabilities behave as blockdev documents, and concurrent I/O to disjoint
// ranges is safe.
//
// An implementation's test calls Run with a function that opens a fresh, zeroed device
// of at least 1 MiB:
//
//	func TestSuite(t *testing.T) {
//		blockdevtest.Run(t, func(t *testing.T) blockdev.Device { return newDevice(t) })
//	}
package blockdevtest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// Open returns a fresh, zeroed, writable device of at least 1 MiB. The suite closes it.
type Open func(t *testing.T) blockdev.Device

// Run runs every test of the suite as subtests.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(*testing.T, blockdev.Device)
	}{
		{"Geometry", testGeometry},
		{"ReadsZeroesWhenNew", testReadsZeroes},
		{"WriteReadBack", testWriteReadBack},
		{"Bounds", testBounds},
		{"Alignment", testAlignment},
		{"Flush", testFlush},
		{"FUA", testFUA},
		{"Unmap", testUnmap},
		{"WriteZeroes", testWriteZeroes},
		{"LBAStatus", testLBAStatus},
		{"ConcurrentDisjoint", testConcurrent},
		{"RandomModel", testRandomModel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := open(t)
			t.Cleanup(func() {
				if err := blockdev.Close(d); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			tc.fn(t, d)
		})
	}
}

func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

func mustWrite(t *testing.T, d blockdev.Device, p []byte, off int64) {
	t.Helper()
	n, err := d.WriteAt(p, off)
	if err != nil || n != len(p) {
		t.Fatalf("WriteAt(%d bytes, %d) = %d, %v; want %d, nil", len(p), off, n, err, len(p))
	}
}

func mustRead(t *testing.T, d blockdev.Device, n int, off int64) []byte {
	t.Helper()
	p := make([]byte, n)
	got, err := d.ReadAt(p, off)
	if err != nil || got != n {
		t.Fatalf("ReadAt(%d bytes, %d) = %d, %v; want %d, nil", n, off, got, err, n)
	}
	return p
}

func testGeometry(t *testing.T, d blockdev.Device) {
	bs := d.BlockSize()
	if bs != 512 && bs != 4096 {
		t.Errorf("BlockSize() = %d, want 512 or 4096", bs)
	}
	if d.Size() < 1<<20 || d.Size()%int64(bs) != 0 {
		t.Errorf("Size() = %d, want a multiple of %d of at least 1 MiB", d.Size(), bs)
	}
}

func testReadsZeroes(t *testing.T, d blockdev.Device) {
	p := mustRead(t, d, 64<<10, d.Size()-64<<10)
	if !bytes.Equal(p, make([]byte, len(p))) {
		t.Errorf("a new device's last 64 KiB are not zero")
	}
}

func testWriteReadBack(t *testing.T, d blockdev.Device) {
	bs := d.BlockSize()
	cases := []struct {
		off int64
		n   int
	}{
		{0, bs}, {int64(bs), 3 * bs}, {d.Size() - int64(bs), bs}, {128 << 10, 256 << 10},
	}
	for i, c := range cases {
		p := pattern(uint64(i+1), c.n)
		mustWrite(t, d, p, c.off)
		if got := mustRead(t, d, c.n, c.off); !bytes.Equal(got, p) {
			t.Errorf("case %d: read back %d bytes at %d differ from what was written", i, c.n, c.off)
		}
	}
}

func testBounds(t *testing.T, d blockdev.Device) {
	bs := d.BlockSize()
	p := make([]byte, 2*bs)
	if _, err := d.ReadAt(p, d.Size()-int64(bs)); err == nil {
		t.Errorf("ReadAt across the end: got nil error, want one")
	}
	if _, err := d.WriteAt(p, d.Size()-int64(bs)); err == nil {
		t.Errorf("WriteAt across the end: got nil error, want one")
	}
	if _, err := d.ReadAt(p[:bs], -int64(bs)); err == nil {
		t.Errorf("ReadAt at a negative offset: got nil error, want one")
	}
}

func testAlignment(t *testing.T, d blockdev.Device) {
	bs := d.BlockSize()
	if _, err := d.WriteAt(make([]byte, bs), 1); !errors.Is(err, blockdev.ErrUnaligned) {
		t.Errorf("WriteAt at offset 1: got %v, want ErrUnaligned", err)
	}
	if _, err := d.ReadAt(make([]byte, bs+1), 0); !errors.Is(err, blockdev.ErrUnaligned) {
		t.Errorf("ReadAt of %d bytes: got %v, want ErrUnaligned", bs+1, err)
	}
}

func testFlush(t *testing.T, d blockdev.Device) {
	mustWrite(t, d, pattern(7, d.BlockSize()), 0)
	if err := d.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := d.Flush(); err != nil {
		t.Fatalf("second Flush: %v", err)
	}
}

func testFUA(t *testing.T, d blockdev.Device) {
	p := pattern(8, 2*d.BlockSize())
	if n, err := blockdev.WriteFUA(d, p, int64(d.BlockSize())); err != nil || n != len(p) {
		t.Fatalf("WriteFUA = %d, %v; want %d, nil", n, err, len(p))
	}
	if got := mustRead(t, d, len(p), int64(d.BlockSize())); !bytes.Equal(got, p) {
		t.Errorf("data written with FUA reads back different")
	}
}

func testUnmap(t *testing.T, d blockdev.Device) {
	const off, n = 64 << 10, 128 << 10
	mustWrite(t, d, pattern(9, n), off)
	if err := blockdev.Unmap(d, off+16<<10, 64<<10); err != nil {
		t.Fatalf("Unmap: %v", err)
	}
	got := mustRead(t, d, n, off)
	want := pattern(9, n)
	clear(want[16<<10 : 80<<10])
	if !bytes.Equal(got, want) {
		t.Errorf("after Unmap the range does not read as zeroes, or its neighbours changed")
	}
}

func testWriteZeroes(t *testing.T, d blockdev.Device) {
	const off, n = 0, 32 << 10
	mustWrite(t, d, pattern(10, n), off)
	if err := blockdev.WriteZeroes(d, off+int64(d.BlockSize()), 8<<10); err != nil {
		t.Fatalf("WriteZeroes: %v", err)
	}
	want := pattern(10, n)
	clear(want[d.BlockSize() : d.BlockSize()+8<<10])
	if got := mustRead(t, d, n, off); !bytes.Equal(got, want) {
		t.Errorf("after WriteZeroes the data is not as expected")
	}
}

func testLBAStatus(t *testing.T, d blockdev.Device) {
	r, ok := d.(blockdev.LBAStatusReporter)
	if !ok {
		t.Skip("device does not report LBA status")
	}
	var covered int64
	for off := int64(0); off < d.Size(); {
		e, err := r.MappedExtent(off)
		if err != nil {
			t.Fatalf("MappedExtent(%d): %v", off, err)
		}
		if e.Off != off || e.Length <= 0 || e.Length%int64(d.BlockSize()) != 0 {
			t.Fatalf("MappedExtent(%d) = %+v: want an extent starting at %d with a positive block-multiple length", off, e, off)
		}
		off += e.Length
		covered += e.Length
	}
	if covered != d.Size() {
		t.Errorf("extents cover %d bytes, want %d", covered, d.Size())
	}
	mustWrite(t, d, pattern(11, d.BlockSize()), 0)
	if e, _ := r.MappedExtent(0); !e.Mapped {
		t.Errorf("block 0 written but reported unmapped")
	}
}

func testConcurrent(t *testing.T, d blockdev.Device) {
	const workers, per = 8, 16 << 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				off := int64((w*8 + i) * per)
				p := pattern(uint64(1000+w*8+i), per)
				if _, err := d.WriteAt(p, off); err != nil {
					t.Errorf("worker %d: WriteAt: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for j := range workers * 8 {
		if got := mustRead(t, d, per, int64(j*per)); !bytes.Equal(got, pattern(uint64(1000+j), per)) {
			t.Errorf("range %d differs after concurrent writes", j)
		}
	}
}

// testRandomModel writes, unmaps and reads at random against an in-memory reference.
func testRandomModel(t *testing.T, d blockdev.Device) {
	bs := int64(d.BlockSize())
	size := min(d.Size(), 4<<20)
	ref := make([]byte, size)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range 300 {
		nb := 1 + r.Int64N(32)
		off := r.Int64N(size/bs-nb+1) * bs
		n := nb * bs
		switch r.IntN(4) {
		case 0, 1:
			p := pattern(r.Uint64(), int(n))
			mustWrite(t, d, p, off)
			copy(ref[off:], p)
		case 2:
			if err := blockdev.Unmap(d, off, n); err != nil {
				t.Fatalf("op %d: Unmap(%d, %d): %v", i, off, n, err)
			}
			clear(ref[off : off+n])
		case 3:
			if got := mustRead(t, d, int(n), off); !bytes.Equal(got, ref[off:off+n]) {
				t.Fatalf("op %d (seed %d): read %d+%d differs from the reference", i, seed, off, n)
			}
		}
	}
	if got := mustRead(t, d, int(size), 0); !bytes.Equal(got, ref) {
		t.Fatalf("seed %d: final contents differ from the reference", seed)
	}
}
