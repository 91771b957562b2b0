package scsi

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// TestSparseFileLBAStatus runs GET LBA STATUS, UNMAP and READ CAPACITY(16) on a
// sparse file with 4096-byte blocks: holes report as deallocated.
func TestSparseFileLBAStatus(t *testing.T) {
	const bs, blocks = 4096, 1024
	dev, err := blockdev.OpenFile(filepath.Join(t.TempDir(), "disk.img"), blockdev.FileOptions{Create: true, Size: bs * blocks, BlockSize: bs})
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	lu, err := NewLogicalUnit(dev, LUConfig{Serial: "file"})
	if err != nil {
		t.Fatal(err)
	}
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	wantGood(t, "write", run(t, lu, n, cdb10(opWrite10, 256, 256), fill(256*bs, 1), 0))
	rc := cdb16(opServiceActionIn16, 0, 32)
	rc[1] = saReadCapacity16
	r := run(t, lu, n, rc, nil, 32)
	if got := binary.BigEndian.Uint32(r.DataIn[8:]); got != bs {
		t.Errorf("got block size %d, want %d", got, bs)
	}
	g := cdb16(opServiceActionIn16, 0, 1024)
	g[1] = saGetLBAStatus
	r = run(t, lu, n, g, nil, 1024)
	wantGood(t, "get lba status", r)
	type ext struct {
		lba    uint64
		n      uint32
		status byte
	}
	var got []ext
	for d := r.DataIn[8:]; len(d) >= 16; d = d[16:] {
		got = append(got, ext{binary.BigEndian.Uint64(d), binary.BigEndian.Uint32(d[8:]), d[12]})
	}
	want := []ext{{0, 256, 1}, {256, 256, 0}, {512, 512, 1}}
	if len(got) != len(want) {
		t.Fatalf("got extents %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("extent %d: got %v, want %v", i, got[i], want[i])
		}
	}
}
