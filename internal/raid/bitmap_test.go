package raid

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// countingDev counts the bytes written to a device at or after from.
type countingDev struct {
	blockdev.Device
	from    int64
	written atomic.Int64
}

func (d *countingDev) WriteAt(p []byte, off int64) (int, error) {
	if off >= d.from {
		d.written.Add(int64(len(p)))
	}
	return d.Device.WriteAt(p, off)
}

// TestBitmapReAdd fails a member, writes to one region, and adds the member back: only
// the region the write-intent bitmap marks dirty is rebuilt, and the data is right.
func TestBitmapReAdd(t *testing.T) {
	for _, l := range []struct{ level, n int }{{1, 2}, {10, 4}, {5, 3}, {6, 4}} {
		t.Run(fmt.Sprintf("raid%d-%d", l.level, l.n), func(t *testing.T) {
			const region = 64 << 10
			ms := memMembers(t, l.n, 4<<20)
			if err := Create(ms, CreateOptions{Level: l.level, Chunk: 16 << 10, BitmapChunk: region}); err != nil {
				t.Fatal(err)
			}
			a, err := Assemble(t.Context(), ms, AssembleOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p := make([]byte, a.Size())
			for i := range p {
				p[i] = byte(i * 7)
			}
			if _, err := a.WriteAt(p, 0); err != nil {
				t.Fatal(err)
			}
			// A clean stop clears the bitmap.
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			a, err = Assemble(t.Context(), ms, AssembleOptions{MinSpeed: 1 << 40})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if got := a.bm.dirtyCount(); got != 0 {
				t.Errorf("after a clean stop: %d dirty regions, want 0", got)
			}
			if err := a.FailMember("m1", false); err != nil {
				t.Fatal(err)
			}
			if err := a.RemoveMember("m1", false); err != nil {
				t.Fatal(err)
			}
			upd := bytes.Repeat([]byte{0xEE}, 4096)
			at := a.Size() / 3 / 512 * 512
			if _, err := a.WriteAt(upd, at); err != nil {
				t.Fatal(err)
			}
			copy(p[at:], upd)
			dirty := a.bm.dirtyCount()
			if dirty < 1 || dirty > 2 {
				t.Errorf("after one 4 KiB write: %d dirty regions, want 1 or 2", dirty)
			}
			cd := &countingDev{Device: ms[1].Dev, from: a.g.dataOff}
			if err := a.AddMember(cd, "m1"); err != nil {
				t.Fatal(err)
			}
			st := a.Status()
			if m := st.Members[1]; m.Name != "m1" || (m.State != RoleRebuilding && m.State != RoleActive) {
				t.Errorf("re-added m1: got %+v, want role 1 rebuilding (or done)", m)
			}
			if err := a.WaitRebuild(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got, max := cd.written.Load(), dirty*region; got > max {
				t.Errorf("re-add rebuilt %d bytes, want at most the %d dirty regions' %d", got, dirty, max)
			}
			if a.Status().Active != l.n {
				t.Errorf("after re-add: %s", a.Status())
			}
			// The re-added member holds the data: fail its neighbour and read.
			if err := a.FailMember("m0", false); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(p))
			if _, err := a.ReadAt(got, 0); err != nil || !bytes.Equal(got, p) {
				t.Fatalf("read after re-add: err %v, data right %v", err, bytes.Equal(got, p))
			}
		})
	}
}

// TestBitmapReAddAfterRestart: a member missing at assembly is re-added from the
// bitmap kept while the array ran without it, across a restart.
func TestBitmapReAddAfterRestart(t *testing.T) {
	ms := memMembers(t, 3, 4<<20)
	if err := Create(ms, CreateOptions{Level: 5, Chunk: 16 << 10, BitmapChunk: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	a, err := Assemble(t.Context(), []Member{ms[0], {Name: "missing"}, ms[2]}, AssembleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte("bitmap!!"), 1<<20/8)
	if _, err := a.WriteAt(p, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a, err = Assemble(t.Context(), []Member{ms[0], {Name: "missing"}, ms[2]}, AssembleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dirty := a.bm.dirtyCount()
	if dirty == 0 {
		t.Fatalf("degraded array lost its dirty bits at a clean stop")
	}
	cd := &countingDev{Device: ms[1].Dev, from: a.g.dataOff}
	if err := a.AddMember(cd, "m1"); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitRebuild(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, max := cd.written.Load(), dirty*(64<<10); got > max || got == 0 {
		t.Errorf("re-add rebuilt %d bytes, want some, at most %d", got, max)
	}
	if err := a.FailMember("m0", false); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(p))
	if _, err := a.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("read with m1 re-added and m0 failed: err %v, data right %v", err, bytes.Equal(got, p))
	}
}
