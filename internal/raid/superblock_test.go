package raid

import (
	"errors"
	"reflect"
	"testing"
)

func testSuperblock() *Superblock {
	return &Superblock{
		Version: SuperblockVersion, ArrayUUID: newUUID(), DeviceUUID: newUUID(), Level: 6, Chunk: 65536,
		RaidDevices: 4, Role: 2, Clean: true, Events: 42, CTime: 1700000000, DataOffset: 1 << 20,
		DataSize: 1 << 30, JournalOff: 4096, JournalSlots: 16, BlockSize: 512, Name: "lab0",
		Policy: PolicyJournal, JournalDurable: 123456, BitmapOff: 4096, BitmapChunk: 64 << 20, BitmapBytes: 4096,
		Roles: []RoleEntry{{newUUID(), RoleActive, 0}, {newUUID(), RoleRebuilding, FlagReAdd},
			{newUUID(), RoleActive, FlagWriteMostly}, {newUUID(), RoleMissing, 0}},
	}
}

// roundTrip marshals sb and decodes it again.
func roundTrip(t *testing.T, sb *Superblock) *Superblock {
	t.Helper()
	b, err := sb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalSuperblock(b)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestSuperblockRoundTrip(t *testing.T) {
	sb := testSuperblock()
	got := roundTrip(t, sb)
	if !reflect.DeepEqual(got, sb) {
		t.Errorf("got %+v, want %+v", got, sb)
	}
}

func TestSuperblockErrors(t *testing.T) {
	good, _ := testSuperblock().Marshal()
	tests := []struct {
		name   string
		mutate func([]byte)
		want   error
	}{
		{"zeroes", func(b []byte) { clear(b) }, ErrNoSuperblock},
		{"flipped bit", func(b []byte) { b[100] ^= 1 }, ErrBadSuperblock},
		{"short", nil, ErrBadSuperblock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			if tt.mutate != nil {
				tt.mutate(b)
			} else {
				b = b[:100]
			}
			_, err := UnmarshalSuperblock(b)
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	sb := testSuperblock()
	sb.Version = 0 // Marshal always writes the current version: patch it afterwards
	b, _ := sb.Marshal()
	b[8] = 9
	if _, err := UnmarshalSuperblock(b); !errors.Is(err, ErrBadSuperblock) {
		t.Errorf("version 9: got %v, want %v", err, ErrBadSuperblock)
	}
	sb = testSuperblock()
	sb.BitmapChunk = 1000 // not a multiple of the chunk
	b, _ = sb.Marshal()
	if _, err := UnmarshalSuperblock(b); !errors.Is(err, ErrBadSuperblock) {
		t.Errorf("bitmap chunk 1000: got %v, want %v", err, ErrBadSuperblock)
	}
}

func FuzzSuperblock(f *testing.F) {
	good, _ := testSuperblock().Marshal()
	f.Add(good)
	nobm := testSuperblock()
	nobm.BitmapOff, nobm.BitmapChunk, nobm.BitmapBytes = 0, 0, 0
	b, _ := nobm.Marshal()
	f.Add(b)
	f.Add(make([]byte, SuperblockSize))
	loc := testSuperblock()
	loc.Locations = make([]string, loc.RaidDevices)
	loc.Locations[0] = "/dev/sdb"
	b, _ = loc.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		sb, err := UnmarshalSuperblock(b)
		if err != nil {
			return
		}
		again, err := sb.Marshal()
		if err != nil {
			t.Fatalf("re-marshal of a decoded superblock: %v", err)
		}
		sb2, err := UnmarshalSuperblock(again)
		if err != nil || !reflect.DeepEqual(sb, sb2) {
			t.Fatalf("round trip: got %+v, %v; want %+v", sb2, err, sb)
		}
	})
}

func FuzzJournalHeader(f *testing.F) {
	u := newUUID()
	b := make([]byte, journalHeader)
	encodeJournalHeader(b, u, &journalPart{seq: 7, stripe: 3, in: 512, w: 1024, role: 1, mask: 3, payload: []byte("x")})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, _, ok := decodeJournalHeader(b, u)
		if !ok {
			return
		}
		c := make([]byte, journalHeader)
		p.payload = nil
		encodeJournalHeader(c, u, &p)
		q, _, ok := decodeJournalHeader(c, u)
		if !ok || q.seq != p.seq || q.stripe != p.stripe || q.in != p.in || q.w != p.w || q.role != p.role || q.mask != p.mask {
			t.Fatalf("round trip: got %+v, want %+v", q, p)
		}
	})
}
