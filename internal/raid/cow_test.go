package raid

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/blockdev/blockdevtest"
)

func TestCowDeviceSuite(t *testing.T) {
	for _, l := range []struct{ level, n int }{{5, 3}, {6, 4}} {
		t.Run(fmt.Sprintf("raid%d-%d", l.level, l.n), func(t *testing.T) {
			blockdevtest.Run(t, func(t *testing.T) blockdev.Device {
				a, _ := newArray(t, l.level, l.n, CreateOptions{CoW: true})
				return a
			})
		})
	}
}

func TestCowTag(t *testing.T) {
	a := &Array{uuid: newUUID()}
	b := make([]byte, cowTagSize)
	want := cowTag{seq: 1<<40 + 7, owner: 123456, flags: tagPresent | tagSettled}
	a.encodeTag(b, want, 0xdeadbeef12345678)
	got, crc, ok := a.decodeTag(b)
	if !ok || got != want || crc != 0xdeadbeef12345678 {
		t.Fatalf("round trip: got %+v crc %x ok %v, want %+v", got, crc, ok, want)
	}
	other := &Array{uuid: newUUID()}
	if _, _, ok := other.decodeTag(b); ok {
		t.Fatal("a tag of another array decoded")
	}
	for i := range cowTagSize {
		c := bytes.Clone(b)
		c[i] ^= 0x10
		if _, _, ok := a.decodeTag(c); ok {
			t.Fatalf("a tag with byte %d flipped decoded", i)
		}
	}
	a.encodeTag(b, cowTag{}, 0)
	if _, _, ok := a.decodeTag(b); ok || !bytes.Equal(b, make([]byte, cowTagSize)) {
		t.Fatal("an empty slot is not all zeroes")
	}
}

func FuzzCowTag(f *testing.F) {
	a := &Array{uuid: UUID{1, 2, 3}}
	b := make([]byte, cowTagSize)
	a.encodeTag(b, cowTag{seq: 9, owner: 3, flags: tagPresent}, 42)
	f.Add(b)
	f.Add(make([]byte, cowTagSize))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < cowTagSize {
			return
		}
		tg, crc, ok := a.decodeTag(in[:cowTagSize])
		if !ok {
			return
		}
		out := make([]byte, cowTagSize)
		a.encodeTag(out, tg, crc)
		if !bytes.Equal(out, in[:cowTagSize]) {
			t.Fatalf("decoded tag %+v re-encodes differently", tg)
		}
	})
}

func TestCowSuperblockVersion(t *testing.T) {
	sb := &Superblock{ArrayUUID: newUUID(), DeviceUUID: newUUID(), Level: 5, Chunk: 65536, RaidDevices: 3,
		Roles: make([]RoleEntry, 3), Policy: PolicyCoW, TagOff: 1 << 20, SpareStripes: 64, BlockSize: 512}
	got := roundTrip(t, sb)
	if got.Version != SuperblockVersionCoW || got.TagOff != sb.TagOff || got.SpareStripes != sb.SpareStripes {
		t.Fatalf("got version %d tags at %d spare %d", got.Version, got.TagOff, got.SpareStripes)
	}
	// A version-1 superblock may not claim the stripe map: a build before it would
	// read such an array at the wrong places.
	sb.Policy = PolicyJournal
	b, _ := sb.Marshal()
	c := bytes.Clone(b)
	c[164] = byte(PolicyCoW)
	fixCRC(c)
	if _, err := UnmarshalSuperblock(c); !errors.Is(err, ErrBadSuperblock) {
		t.Fatalf("version 1 with policy cow: %v", err)
	}
}

// fixCRC recomputes the CRC of a superblock edited by a test.
func fixCRC(b []byte) {
	c := bytes.Clone(b[:SuperblockSize])
	clear(c[12:16])
	clear(c[locationsOff:locationsEnd])
	binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(c, castagnoli))
}

// TestCowTornFullStripe is the write hole: a full-stripe write torn by a crash
// (one member's new shard lost, the others and every tag written), and a member
// missing when the array comes back. Reading the stripe must give its old content
// whole, not a mix reconstructed from old and new shards.
func TestCowTornFullStripe(t *testing.T) {
	clock := &crashClock{}
	const bs = 512
	devs := make([]*crashDev, 3)
	ms := make([]Member, 3)
	for i := range devs {
		devs[i] = newCrashDev(4<<20, bs, clock)
		ms[i] = Member{Dev: devs[i], Name: fmt.Sprintf("m%d", i)}
	}
	if err := Create(ms, CreateOptions{Level: 5, Chunk: 4096, CoW: true}); err != nil {
		t.Fatal(err)
	}
	a, err := Assemble(t.Context(), ms, AssembleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sw := a.g.stripeWidth()
	old := bytes.Repeat([]byte{0x11}, int(sw))
	if _, err := a.WriteAt(old, 5*sw); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	// The new write lands on members 0 and 2 and in every tag area, but member 1's
	// new shard is lost; then member 2 is gone.
	home := a.home(5)
	newer := bytes.Repeat([]byte{0x22}, int(sw))
	if _, err := a.WriteAt(newer, 5*sw); err != nil {
		t.Fatal(err)
	}
	if a.home(5) == home {
		t.Fatal("the full-stripe write stayed in place")
	}
	moved := a.home(5)
	clock.frozen.Store(true)
	_ = a.Close()
	for i, d := range devs {
		d.mu.Lock()
		copy(d.data, d.durable)
		for _, w := range d.pending {
			lo, hi := a.g.dataOff+moved*a.g.chunk, a.g.dataOff+(moved+1)*a.g.chunk
			if i == 1 && w.off >= lo && w.off < hi {
				continue
			}
			copy(d.data[w.off:], w.data)
		}
		copy(d.durable, d.data)
		d.pending = nil
		d.mu.Unlock()
	}
	clock.frozen.Store(false)
	b, err := Assemble(t.Context(), []Member{ms[0], ms[1], {Name: "m2"}}, AssembleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make([]byte, sw)
	if _, err := b.ReadAt(got, 5*sw); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, old) {
		t.Fatalf("stripe after the torn write: %x... (want all 11: the old content whole)", got[:16])
	}
	if b.home(5) != home {
		t.Fatalf("stripe 5 at physical %d, want its old home %d", b.home(5), home)
	}
}

// TestCowSpareExhaustion rewrites every stripe twice with no flush: more stripes
// than there are spares, so writes must settle (flush) to free old homes, and every
// read must see the last write.
func TestCowSpareExhaustion(t *testing.T) {
	a, ms := newArray(t, 6, 4, CreateOptions{CoW: true, Chunk: 4096})
	sw := a.g.stripeWidth()
	stripes := a.Size() / sw
	if stripes <= a.g.spare {
		t.Fatalf("%d stripes, %d spare: the test needs more stripes than spares", stripes, a.g.spare)
	}
	buf := make([]byte, sw)
	for round := byte(1); round <= 2; round++ {
		for s := int64(0); s < stripes; s++ {
			for i := range buf {
				buf[i] = round ^ byte(s) ^ byte(i>>9)
			}
			if _, err := a.WriteAt(buf, s*sw); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(d blockdev.Device) {
		for s := int64(0); s < stripes; s++ {
			if _, err := d.ReadAt(buf, s*sw); err != nil {
				t.Fatal(err)
			}
			for i := range buf {
				if buf[i] != 2^byte(s)^byte(i>>9) {
					t.Fatalf("stripe %d byte %d: %x", s, i, buf[i])
				}
			}
		}
	}
	check(a)
	st := a.Status()
	if st.CowFree < 1 || st.CowSpare != a.g.spare {
		t.Fatalf("status: %d free of %d spare", st.CowFree, st.CowSpare)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := Assemble(t.Context(), ms, AssembleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	check(b)
	if res, err := b.Check(t.Context(), false); err != nil || res.Mismatches != 0 {
		t.Fatalf("check: %d mismatches, %v", res.Mismatches, err)
	}
}
