package proto

import (
	"bytes"
	"testing"
)

func TestPOSIXMessagesRoundTrip(t *testing.T) {
	l := Lock{Ino: 7, Owner: 0xfeed, Start: 10, End: 1<<63 - 1, Type: LockWrite, Pid: 42, Kind: LockFlock}
	var e Enc
	l.Encode(&e)
	var got Lock
	if err := got.Decode(e.B); err != nil || got != l {
		t.Errorf("Lock round trip: got %+v, %v; want %+v", got, err, l)
	}
	bad := l
	bad.Start, bad.End = 5, 4
	e = Enc{}
	bad.Encode(&e)
	if err := got.Decode(e.B); err == nil {
		t.Errorf("Lock with start after end decoded, want an error")
	}
	st := Statfs{Total: 1 << 40, Free: 1 << 39, Inodes: 12, Goal: 2}
	e = Enc{}
	st.Encode(&e)
	var gs Statfs
	if err := gs.Decode(e.B); err != nil || gs != st {
		t.Errorf("Statfs round trip: got %+v, %v; want %+v", gs, err, st)
	}
	if MsgSetlk.String() != "Setlk" || MsgCreateOpen.String() != "CreateOpen" {
		t.Errorf("POSIX message names: %s, %s", MsgSetlk, MsgCreateOpen)
	}
}

func FuzzDecodePOSIX(f *testing.F) {
	for _, m := range []interface{ Encode(*Enc) }{
		&Lock{Ino: 1, Owner: 2, Start: 0, End: 99, Type: LockRead, Pid: 3},
		&Statfs{Total: 100, Free: 50, Inodes: 3, Goal: 2},
	} {
		var e Enc
		m.Encode(&e)
		f.Add(e.B)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var l Lock
		if l.Decode(b) == nil {
			var e Enc
			l.Encode(&e)
			if !bytes.Equal(e.B, b) {
				t.Fatalf("Lock re-encodes to %x, want %x", e.B, b)
			}
			if l.Start > l.End || l.Type > LockUnlock || l.Kind > LockFlock {
				t.Fatalf("Lock decoded out of range: %+v", l)
			}
		}
		var s Statfs
		if s.Decode(b) == nil {
			var e Enc
			s.Encode(&e)
			if !bytes.Equal(e.B, b) {
				t.Fatalf("Statfs re-encodes to %x, want %x", e.B, b)
			}
		}
	})
}
