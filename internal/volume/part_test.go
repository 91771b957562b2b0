package volume_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/raid"
	"github.com/rampart-storage/rampart/internal/volume"
)

func TestParsePart(t *testing.T) {
	good := []struct {
		spec  string
		n, m  int
		inner string
	}{
		{"part:1/2:raid:a,b,c", 1, 2, "raid:a,b,c"},
		{"part:2/2:/var/lib/disk.img", 2, 2, "/var/lib/disk.img"},
		{"part:1/1:x", 1, 1, "x"},
		{"part:3/4:part:1/2:x", 3, 4, "part:1/2:x"},
	}
	for _, tc := range good {
		n, m, inner, err := volume.ParsePart(tc.spec)
		if err != nil || n != tc.n || m != tc.m || inner != tc.inner {
			t.Errorf("ParsePart(%q) = %d, %d, %q, %v; want %d, %d, %q", tc.spec, n, m, inner, err, tc.n, tc.m, tc.inner)
		}
	}
	for _, spec := range []string{"part:", "part:1/2", "part:1/2:", "part:0/2:x", "part:3/2:x", "part:1/0:x",
		"part:a/2:x", "part:1:x", "part:1/129:x", "raid:a", "part:-1/2:x"} {
		if _, _, _, err := volume.ParsePart(spec); err == nil {
			t.Errorf("ParsePart(%q) accepted", spec)
		}
	}
}

func FuzzParsePart(f *testing.F) {
	for _, s := range []string{"part:1/2:raid:a,b,c", "part:2/2:/x", "part:0/2:x", "part:1/2", "part:99999999999999999999/1:x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		n, m, inner, err := volume.ParsePart(spec)
		if err != nil {
			return
		}
		if n < 1 || n > m || m > 128 || inner == "" {
			t.Fatalf("ParsePart(%q) = %d, %d, %q", spec, n, m, inner)
		}
		off, length := volume.PartRange(1<<30, n, m, volume.PartAlign)
		if off < 0 || length <= 0 || off+length > 1<<30 || length%volume.PartAlign != 0 {
			t.Fatalf("PartRange(1 GiB, %d, %d) = %d, %d", n, m, off, length)
		}
	})
}

func TestPartRange(t *testing.T) {
	// 3 MiB + 512 bytes in two parts: 1 MiB each (aligned down), the rest unused.
	size := int64(3<<20 + 512)
	if off, l := volume.PartRange(size, 1, 2, volume.PartAlign); off != 0 || l != 1<<20 {
		t.Errorf("part 1/2 = %d+%d", off, l)
	}
	if off, l := volume.PartRange(size, 2, 2, volume.PartAlign); off != 1<<20 || l != 1<<20 {
		t.Errorf("part 2/2 = %d+%d", off, l)
	}
}

// countingKind registers a kind backed by one memory device per spec and counts opens
// and closes, to see that parts share one opened volume.
type countingKind struct {
	opens, closes atomic.Int32
	mu            sync.Mutex
	devs          map[string]*blockdev.Mem
}

type closingMem struct {
	*blockdev.Mem
	k *countingKind
}

func (c closingMem) Close() error { c.k.closes.Add(1); return nil }

func TestPartsShareOneVolume(t *testing.T) {
	ctx := context.Background()
	k := &countingKind{devs: map[string]*blockdev.Mem{}}
	volume.Register("parttest", func(ctx context.Context, spec string, opts volume.Options) (blockdev.Device, error) {
		if spec == "parttest:fail" {
			return nil, errors.New("no such test volume")
		}
		k.opens.Add(1)
		k.mu.Lock()
		defer k.mu.Unlock()
		m := k.devs[spec]
		if m == nil {
			m = blockdev.NewMem(4<<20, 512)
			k.devs[spec] = m
		}
		return closingMem{m, k}, nil
	})

	p1, err := volume.Open(ctx, "part:1/2:parttest:a", volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := volume.Open(ctx, "part:2/2:parttest:a", volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := k.opens.Load(); n != 1 {
		t.Fatalf("two parts opened the volume %d times, want once", n)
	}
	if p1.Size() != 2<<20 || p2.Size() != 2<<20 {
		t.Fatalf("part sizes %d, %d; want 2 MiB each", p1.Size(), p2.Size())
	}
	a := bytes.Repeat([]byte{0xa1}, 4096)
	b := bytes.Repeat([]byte{0xb2}, 4096)
	if _, err := p1.WriteAt(a, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := blockdev.WriteFUA(p2, b, 0); err != nil {
		t.Fatal(err)
	}
	whole := k.devs["parttest:a"]
	got := make([]byte, 4096)
	whole.ReadAt(got, 0)
	if !bytes.Equal(got, a) {
		t.Error("part 1's block 0 is not the volume's block 0")
	}
	whole.ReadAt(got, 2<<20)
	if !bytes.Equal(got, b) {
		t.Error("part 2's block 0 is not the volume's block at 2 MiB")
	}
	if err := blockdev.Unmap(p2, 0, 4096); err != nil {
		t.Fatal(err)
	}
	whole.ReadAt(got, 2<<20)
	if !bytes.Equal(got, make([]byte, 4096)) {
		t.Error("unmap of part 2's block 0 did not zero the volume at 2 MiB")
	}
	if e, err := p2.(blockdev.LBAStatusReporter).MappedExtent(0); err != nil || e.Off != 0 || e.Off+e.Length > p2.Size() {
		t.Errorf("MappedExtent(0) of part 2 = %+v, %v: want an extent inside the part", e, err)
	}

	// Out of range: a part ends where it ends, not where the volume does.
	if _, err := p1.ReadAt(got, 2<<20); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Errorf("read past part 1 = %v, want ErrOutOfRange", err)
	}
	if err := blockdev.WriteZeroes(p2, 2<<20-512, 1024); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Errorf("zeroes past part 2 = %v, want ErrOutOfRange", err)
	}
	if id := p1.(blockdev.Identifier).DeviceID(); id == p2.(blockdev.Identifier).DeviceID() {
		t.Errorf("both parts have the DeviceID %q", id)
	}

	// The volume closes with its last part, once; a part closed twice counts once.
	blockdev.Close(p1)
	blockdev.Close(p1)
	if n := k.closes.Load(); n != 0 {
		t.Fatalf("volume closed while part 2 is open (%d closes)", n)
	}
	blockdev.Close(p2)
	if n := k.closes.Load(); n != 1 {
		t.Fatalf("volume closed %d times after its last part, want 1", n)
	}
	// Opened again afterwards: a fresh open.
	p3, err := volume.Open(ctx, "part:1/2:parttest:a", volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := k.opens.Load(); n != 2 {
		t.Errorf("reopen after the last close: %d opens, want 2", n)
	}
	blockdev.Close(p3)

	// Read-only parts do not share a read-write opening.
	r1, _ := volume.Open(ctx, "part:1/2:parttest:b", volume.Options{})
	r2, _ := volume.Open(ctx, "part:2/2:parttest:b", volume.Options{ReadOnly: true})
	if n := k.opens.Load(); n != 4 {
		t.Errorf("a read-only and a read-write part: %d opens in all, want 4", n)
	}
	blockdev.Close(r1)
	blockdev.Close(r2)

	if _, err := volume.Open(ctx, "part:1/2:parttest:fail", volume.Options{}); err == nil {
		t.Error("part of a volume that cannot open: no error")
	}
	if _, err := volume.Open(ctx, "part:1/2:parttest:a", volume.Options{Create: true, Size: 1 << 20}); err == nil {
		t.Error("a part with Create: no error")
	}
}

// TestPartsOfOneArray opens both halves of a RAID-5 array: the array is assembled once
// (a second assembly would fail on the array's lock), and its lock is released when
// the last half closes.
func TestPartsOfOneArray(t *testing.T) {
	t.Setenv("RAMPART_RUN_DIR", t.TempDir())
	ctx := context.Background()
	dir := t.TempDir()
	var ms []raid.Member
	var paths []string
	for _, n := range []string{"a", "b", "c"} {
		p := filepath.Join(dir, n)
		d, err := blockdev.OpenFile(p, blockdev.FileOptions{Create: true, Size: 8 << 20, BlockSize: 512})
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, raid.Member{Dev: d, Name: p})
		paths = append(paths, p)
	}
	if err := raid.Create(ms, raid.CreateOptions{Level: 5, Chunk: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	raid.CloseMembers(ms)
	spec := "raid:" + paths[0] + "," + paths[1] + "," + paths[2]

	for round := 0; round < 2; round++ {
		h1, err := volume.Open(ctx, "part:1/2:"+spec, volume.Options{})
		if err != nil {
			t.Fatalf("round %d: first half: %v", round, err)
		}
		h2, err := volume.Open(ctx, "part:2/2:"+spec, volume.Options{})
		if err != nil {
			t.Fatalf("round %d: second half (array assembled twice?): %v", round, err)
		}
		if h1.Size() == 0 || h1.Size() != h2.Size() || h1.Size()%volume.PartAlign != 0 {
			t.Fatalf("halves of %s: %d and %d bytes", spec, h1.Size(), h2.Size())
		}
		if round == 0 {
			if _, err := h1.WriteAt(bytes.Repeat([]byte{1}, 512), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := h2.WriteAt(bytes.Repeat([]byte{2}, 512), 0); err != nil {
				t.Fatal(err)
			}
		} else {
			got := make([]byte, 512)
			h1.ReadAt(got, 0)
			if got[0] != 1 || got[511] != 1 {
				t.Error("first half lost its block 0 across a close and reopen")
			}
			h2.ReadAt(got, 0)
			if got[0] != 2 || got[511] != 2 {
				t.Error("second half lost its block 0 across a close and reopen")
			}
		}
		if err := blockdev.Close(h1); err != nil {
			t.Fatal(err)
		}
		if err := blockdev.Close(h2); err != nil {
			t.Fatal(err)
		}
	}
}
