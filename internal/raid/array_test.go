package raid

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/blockdev/blockdevtest"
)

func memMembers(t *testing.T, n int, size int64) []Member {
	t.Helper()
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{Dev: blockdev.NewMem(size, 512), Name: fmt.Sprintf("m%d", i)}
	}
	return ms
}

func newArray(t *testing.T, level, n int, opts CreateOptions) (*Array, []Member) {
	t.Helper()
	ms := memMembers(t, n, 2<<20)
	opts.Level = level
	if opts.Chunk == 0 {
		opts.Chunk = 16 << 10
	}
	if err := Create(ms, opts); err != nil {
		t.Fatalf("create raid%d: %v", level, err)
	}
	a, err := Assemble(t.Context(), ms, AssembleOptions{})
	if err != nil {
		t.Fatalf("assemble raid%d: %v", level, err)
	}
	t.Cleanup(func() { a.Close() })
	return a, ms
}

var levels = []struct{ level, n int }{{0, 3}, {1, 2}, {10, 4}, {5, 3}, {5, 5}, {6, 4}, {6, 6}}

func TestDeviceSuite(t *testing.T) {
	for _, l := range levels {
		t.Run(fmt.Sprintf("raid%d-%d", l.level, l.n), func(t *testing.T) {
			blockdevtest.Run(t, func(t *testing.T) blockdev.Device {
				ms := memMembers(t, l.n, 2<<20)
				if err := Create(ms, CreateOptions{Level: l.level, Chunk: 16 << 10}); err != nil {
					t.Fatal(err)
				}
				a, err := Assemble(t.Context(), ms, AssembleOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return a
			})
		})
	}
}

func TestCreateRefusesMembersWithSuperblock(t *testing.T) {
	ms := memMembers(t, 3, 4<<20)
	if err := Create(ms, CreateOptions{Level: 5}); err != nil {
		t.Fatal(err)
	}
	err := Create(ms, CreateOptions{Level: 5})
	if !errors.Is(err, ErrHasSuperblock) || !strings.Contains(err.Error(), "m0, m1, m2") || !strings.Contains(err.Error(), "--force") {
		t.Errorf("create over members: got %v, want %v naming m0, m1, m2 and --force", err, ErrHasSuperblock)
	}
	if err := Create(ms, CreateOptions{Level: 5, Force: true}); err != nil {
		t.Errorf("create --force: got %v, want success", err)
	}
}

func TestAssembleRefusesForeignAndStale(t *testing.T) {
	a, ms := newArray(t, 5, 3, CreateOptions{})
	other := memMembers(t, 3, 2<<20)
	if err := Create(other, CreateOptions{Level: 5, Chunk: 16 << 10}); err != nil {
		t.Fatal(err)
	}
	// Fail m2, then bring it back: it is stale.
	if err := a.FailMember("m2", false); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Assemble(t.Context(), []Member{ms[0], ms[1], {Dev: other[2].Dev, Name: "intruder"}}, AssembleOptions{})
	if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "intruder") {
		t.Errorf("foreign: got %v, want %v naming intruder", err, ErrForeign)
	}
	_, err = Assemble(t.Context(), ms, AssembleOptions{})
	if !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "m2") {
		t.Errorf("stale: got %v, want %v naming m2", err, ErrStale)
	}
	b, err := Assemble(t.Context(), ms, AssembleOptions{DropStale: true})
	if err != nil {
		t.Fatalf("assemble dropping stale: %v", err)
	}
	if st := b.Status(); st.Active != 2 {
		t.Errorf("active members: got %d, want 2", st.Active)
	}
	b.Close()
}

func TestFailRefusesBelowTolerance(t *testing.T) {
	a, _ := newArray(t, 5, 3, CreateOptions{})
	if err := a.FailMember("m0", false); err != nil {
		t.Fatal(err)
	}
	err := a.FailMember("m1", false)
	if !errors.Is(err, ErrTolerance) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("fail second member: got %v, want %v", err, ErrTolerance)
	}
}

// TestDegraded writes, fails members up to the tolerance (writing in between), and
// reads everything back; one more failure fails the array with I/O errors.
func TestDegraded(t *testing.T) {
	for _, l := range levels {
		t.Run(fmt.Sprintf("raid%d-%d", l.level, l.n), func(t *testing.T) {
			a, _ := newArray(t, l.level, l.n, CreateOptions{})
			rng := rand.New(rand.NewPCG(1, 2))
			ref := make([]byte, a.Size())
			write := func() {
				for i := 0; i < 50; i++ {
					off := rng.Int64N(a.Size()/512) * 512
					n := min(512*(1+rng.Int64N(200)), a.Size()-off)
					p := make([]byte, n)
					for j := range p {
						p[j] = byte(rng.Uint32())
					}
					if _, err := a.WriteAt(p, off); err != nil {
						t.Fatalf("write: %v", err)
					}
					copy(ref[off:], p)
				}
			}
			check := func(when string) {
				got := make([]byte, a.Size())
				if _, err := a.ReadAt(got, 0); err != nil {
					t.Fatalf("%s: read: %v", when, err)
				}
				if !bytes.Equal(got, ref) {
					t.Fatalf("%s: data differs", when)
				}
			}
			write()
			check("healthy")
			tol := a.g.tolerance()
			for i := 0; i < tol; i++ {
				if err := a.FailMember(fmt.Sprintf("m%d", i*2%l.n), false); err != nil {
					t.Fatal(err)
				}
				check(fmt.Sprintf("%d failed", i+1))
				write()
				check(fmt.Sprintf("%d failed, after writes", i+1))
			}
			if err := a.FailMember(fmt.Sprintf("m%d", 1), true); err != nil {
				t.Fatal(err)
			}
			_, err := a.ReadAt(make([]byte, a.Size()), 0)
			if !errors.Is(err, ErrFailed) {
				t.Errorf("read beyond tolerance: got %v, want %v", err, ErrFailed)
			}
		})
	}
}

func TestRebuildStatus(t *testing.T) {
	a, ms := newArray(t, 5, 3, CreateOptions{})
	p := bytes.Repeat([]byte("rampart!"), int(a.Size()/8))
	if _, err := a.WriteAt(p, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.FailMember("m1", false); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveMember("m1", false); err != nil {
		t.Fatal(err)
	}
	if got := a.Status().String(); !strings.Contains(got, "[3/2] [U_U]") {
		t.Errorf("degraded status: got %q, want [3/2] [U_U]", got)
	}
	a.SetSpeed(1<<20, 4<<20) // slow enough to see progress
	if err := a.AddMember(blockdev.NewMem(2<<20, 512), "new"); err != nil {
		t.Fatal(err)
	}
	st := a.Status()
	if st.Recovery == nil || !strings.Contains(st.String(), "recovery = ") || !strings.Contains(st.String(), "speed=") {
		t.Errorf("status during rebuild: got %q, want a recovery line", st.String())
	}
	if err := a.WaitRebuild(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := a.Status().String(); !strings.Contains(got, "[3/3] [UUU]") {
		t.Errorf("status after rebuild: got %q, want [3/3] [UUU]", got)
	}
	// The rebuilt member holds the data: fail another and read.
	if err := a.FailMember("m0", false); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(p))
	if _, err := a.ReadAt(got, 0); err != nil || !bytes.Equal(got, p) {
		t.Errorf("read after rebuild with m0 failed: err %v, equal %v", err, bytes.Equal(got, p))
	}
	_ = ms
}

func TestWriteMostly(t *testing.T) {
	a, ms := newArray(t, 1, 2, CreateOptions{WriteMostly: []int{1}})
	p := bytes.Repeat([]byte{7}, 64<<10)
	if _, err := a.WriteAt(p, 0); err != nil {
		t.Fatal(err)
	}
	// Corrupt the write-mostly copy: reads must never see it.
	if _, err := ms[1].Dev.WriteAt(make([]byte, 64<<10), a.g.dataOff); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		got := make([]byte, 4096)
		if _, err := a.ReadAt(got, int64(i%16)*4096); err != nil || got[0] != 7 {
			t.Fatalf("read %d: got %d, err %v; want 7 (from the member that is not write-mostly)", i, got[0], err)
		}
	}
}

// TestBitRot flips bytes in one member; check finds the mismatch, repair fixes it and
// the data reads back right.
func TestBitRot(t *testing.T) {
	tests := []struct {
		level, n int
		victim   func(a *Array) (role int, moff int64) // where to rot
	}{
		// RAID-6 locates a bad data shard from P and Q.
		{6, 4, func(a *Array) (int, int64) { return a.g.role(0, 0), 100 }},
		// RAID-5 can only rewrite parity: rot the parity.
		{5, 3, func(a *Array) (int, int64) { return a.g.role(0, 2), 100 }},
		// Mirrors: rot the second copy; the first (majority of 3 for raid1-3) wins.
		{1, 2, func(a *Array) (int, int64) { return 1, 100 }},
		{1, 3, func(a *Array) (int, int64) { return 0, 100 }},
		{10, 4, func(a *Array) (int, int64) { return 3, 100 }},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("raid%d-%d", tt.level, tt.n), func(t *testing.T) {
			a, ms := newArray(t, tt.level, tt.n, CreateOptions{})
			p := make([]byte, a.Size())
			for i := range p {
				p[i] = byte(i * 7)
			}
			if _, err := a.WriteAt(p, 0); err != nil {
				t.Fatal(err)
			}
			if res, err := a.Check(t.Context(), false); err != nil || res.Mismatches != 0 {
				t.Fatalf("check before rot: got %+v, %v; want 0 mismatches", res, err)
			}
			r, moff := tt.victim(a)
			if _, err := ms[r].Dev.WriteAt(bytes.Repeat([]byte{0xEE}, 512), a.g.dataOff+moff/512*512); err != nil {
				t.Fatal(err)
			}
			res, err := a.Check(t.Context(), false)
			if err != nil || res.Mismatches != 1 {
				t.Fatalf("check after rot: got %+v, %v; want 1 mismatch", res, err)
			}
			res, err = a.Check(t.Context(), true)
			if err != nil || res.Repaired != 1 {
				t.Fatalf("repair: got %+v, %v; want 1 repaired", res, err)
			}
			if res, err := a.Check(t.Context(), false); err != nil || res.Mismatches != 0 {
				t.Fatalf("check after repair: got %+v, %v; want 0 mismatches", res, err)
			}
			got := make([]byte, len(p))
			for i := 0; i < 3; i++ { // mirrors read round robin
				if _, err := a.ReadAt(got, 0); err != nil || !bytes.Equal(got, p) {
					t.Fatalf("read after repair: err %v, data right %v", err, bytes.Equal(got, p))
				}
			}
		})
	}
}
