package scsi

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// prout builds PERSISTENT RESERVE OUT for service action sa, type typ.
func prout(sa, typ byte, key, saKey uint64, flags byte) ([]byte, []byte) {
	d := make([]byte, 24)
	binary.BigEndian.PutUint64(d, key)
	binary.BigEndian.PutUint64(d[8:], saKey)
	d[20] = flags
	return []byte{opPROut, sa, typ, 0, 0, 0, 0, 0, 24, 0}, d
}

func prin(t *testing.T, lu *LogicalUnit, n *Nexus, sa byte) []byte {
	t.Helper()
	r := run(t, lu, n, []byte{opPRIn, sa, 0, 0, 0, 0, 0, 0x10, 0, 0}, nil, 4096)
	wantGood(t, "PR IN", r)
	return r.DataIn
}

func readKeys(t *testing.T, lu *LogicalUnit, n *Nexus) []uint64 {
	d := prin(t, lu, n, 0)
	var keys []uint64
	for i := 8; i+8 <= len(d); i += 8 {
		keys = append(keys, binary.BigEndian.Uint64(d[i:]))
	}
	return keys
}

func TestPersistentReservationTypes(t *testing.T) {
	// Per type: can a registered non-holder (reg) and an unregistered nexus (none)
	// read and write?
	tests := []struct {
		typ                 byte
		regRead, regWrite   bool
		noneRead, noneWrite bool
	}{
		{prWriteExclusive, true, false, true, false},
		{prExclusiveAccess, false, false, false, false},
		{prWriteExclusiveRO, true, true, true, false},
		{prExclusiveAccessRO, true, true, false, false},
		{prWriteExclusiveAR, true, true, true, false},
		{prExclusiveAccessAR, true, true, false, false},
	}
	for _, tt := range tests {
		lu, _ := newTestLU(t, 64, LUConfig{})
		holder, reg, none := testNexus("a", "1", 1), testNexus("b", "2", 1), testNexus("c", "3", 2)
		for _, n := range []*Nexus{holder, reg, none} {
			ready(t, lu, n)
		}
		c, d := prout(0, 0, 0, 0xa, 0)
		wantGood(t, "register holder", run(t, lu, holder, c, d, 0))
		c, d = prout(0, 0, 0, 0xb, 0)
		wantGood(t, "register other", run(t, lu, reg, c, d, 0))
		c, d = prout(1, tt.typ, 0xa, 0, 0)
		wantGood(t, "reserve", run(t, lu, holder, c, d, 0))
		check := func(who string, n *Nexus, read, write bool) {
			t.Helper()
			r := run(t, lu, n, cdb10(opRead10, 0, 1), nil, 512)
			if got := r.Status == StatusGood; got != read {
				t.Errorf("type %d %s read: got status %#x, want allowed=%v", tt.typ, who, r.Status, read)
			}
			r = run(t, lu, n, cdb10(opWrite10, 0, 1), make([]byte, 512), 0)
			if got := r.Status == StatusGood; got != write {
				t.Errorf("type %d %s write: got status %#x, want allowed=%v", tt.typ, who, r.Status, write)
			}
			if !read && r.Status != StatusGood && r.Status != StatusReservationConflict {
				t.Errorf("type %d %s: got status %#x, want RESERVATION CONFLICT", tt.typ, who, r.Status)
			}
		}
		check("holder", holder, true, true)
		check("registered", reg, tt.regRead, tt.regWrite)
		check("unregistered", none, tt.noneRead, tt.noneWrite)
		wantGood(t, "TUR under reservation", run(t, lu, none, make([]byte, 6), nil, 0))
		d2 := prin(t, lu, reg, 1)
		if binary.BigEndian.Uint32(d2[4:]) != 16 || d2[8+13] != tt.typ {
			t.Errorf("type %d: READ RESERVATION got %x", tt.typ, d2)
		}
	}
}

func TestPersistentReservationStateMachine(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	a, b, c := testNexus("a", "1", 1), testNexus("b", "2", 1), testNexus("c", "3", 1)
	for _, n := range []*Nexus{a, b, c} {
		ready(t, lu, n)
	}
	steps := []struct {
		name   string
		n      *Nexus
		sa     byte
		typ    byte
		key    uint64
		saKey  uint64
		flags  byte
		status byte
		keys   int
		ua     uint16 // unit attention expected first on s.n
	}{
		{"unregistered reserve conflicts", a, 1, prWriteExclusive, 0xa, 0, 0, StatusReservationConflict, 0, 0},
		{"register with nonzero key conflicts", a, 0, 0, 0x1, 0xa, 0, StatusReservationConflict, 0, 0},
		{"register a", a, 0, 0, 0, 0xa, 0, StatusGood, 1, 0},
		{"register b", b, 0, 0, 0, 0xb, 0, StatusGood, 2, 0},
		{"register c", c, 0, 0, 0, 0xc, 0, StatusGood, 3, 0},
		{"re-register with wrong key conflicts", a, 0, 0, 0x99, 0xaa, 0, StatusReservationConflict, 3, 0},
		{"register and ignore changes key", a, 6, 0, 0x99, 0xaa, 0, StatusGood, 3, 0},
		{"reserve with wrong key", a, 1, prExclusiveAccess, 0xa, 0, 0, StatusReservationConflict, 3, 0},
		{"reserve EA", a, 1, prExclusiveAccess, 0xaa, 0, 0, StatusGood, 3, 0},
		{"reserve again same type", a, 1, prExclusiveAccess, 0xaa, 0, 0, StatusGood, 3, 0},
		{"other reserve conflicts", b, 1, prExclusiveAccess, 0xb, 0, 0, StatusReservationConflict, 3, 0},
		{"release by non-holder is a no-op", b, 2, prExclusiveAccess, 0xb, 0, 0, StatusGood, 3, 0},
		{"release wrong type", a, 2, prWriteExclusive, 0xaa, 0, 0, StatusCheckCondition, 3, 0},
		{"preempt by b of a", b, 4, prWriteExclusive, 0xb, 0xaa, 0, StatusGood, 2, 0},
		{"a no longer registered", a, 1, prWriteExclusive, 0xaa, 0, 0, StatusReservationConflict, 2, ascRegistrationsPreempt},
		{"preempt unknown key conflicts", b, 4, prWriteExclusive, 0xb, 0x77, 0, StatusReservationConflict, 2, 0},
		{"preempt zero key without reservation-holder match", c, 4, prWriteExclusive, 0xc, 0, 0, StatusCheckCondition, 2, 0},
		{"c unregisters", c, 0, 0, 0xc, 0, 0, StatusGood, 1, 0},
		{"clear by b", b, 3, 0, 0xb, 0, 0, StatusGood, 0, 0},
	}
	for _, s := range steps {
		cdb, d := prout(s.sa, s.typ, s.key, s.saKey, s.flags)
		if s.ua != 0 {
			wantSense(t, s.name+": unit attention", run(t, lu, s.n, cdb, d, 0), senseUnitAttention, s.ua)
		}
		r := run(t, lu, s.n, cdb, d, 0)
		if r.Status != s.status {
			t.Fatalf("%s: got status %#x sense %x, want %#x", s.name, r.Status, r.Sense, s.status)
		}
		if got := len(readKeys(t, lu, b)); got != s.keys {
			t.Fatalf("%s: got %d keys, want %d", s.name, got, s.keys)
		}
	}
	// c had unregistered before CLEAR, so it got no RESERVATIONS PREEMPTED.
	wantGood(t, "c after clear", run(t, lu, c, make([]byte, 6), nil, 0))
	if lu.reserved.Load() {
		t.Errorf("reserved flag still set after CLEAR")
	}
}

func TestPersistentReservationAllRegistrants(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	a, b := testNexus("a", "1", 1), testNexus("b", "2", 1)
	ready(t, lu, a)
	ready(t, lu, b)
	for i, n := range []*Nexus{a, b} {
		c, d := prout(0, 0, 0, uint64(i+1), 0)
		wantGood(t, "register", run(t, lu, n, c, d, 0))
	}
	c, d := prout(1, prWriteExclusiveAR, 1, 0, 0)
	wantGood(t, "reserve WE-AR", run(t, lu, a, c, d, 0))
	c, d = prout(0, 0, 1, 0, 0)
	wantGood(t, "a unregisters", run(t, lu, a, c, d, 0))
	if rr := prin(t, lu, b, 1); binary.BigEndian.Uint32(rr[4:]) != 16 {
		t.Errorf("reservation gone after one of two all-registrants left")
	}
	wantGood(t, "b writes", run(t, lu, b, cdb10(opWrite10, 0, 1), make([]byte, 512), 0))
	if r := run(t, lu, a, cdb10(opWrite10, 0, 1), make([]byte, 512), 0); r.Status != StatusReservationConflict {
		t.Errorf("unregistered a write: got status %#x, want conflict", r.Status)
	}
}

func TestSpecIPTAndAllTgPt(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	a, b1, b2 := testNexus("a", "1", 1), testNexus("b", "2", 1), testNexus("b", "2", 2)
	for _, n := range []*Nexus{a, b1, b2} {
		ready(t, lu, n)
	}
	tid := encodeTransportID(prIdent{Initiator: "iqn.2026-11.org.example:b"})
	c, d := prout(0, 0, 0, 0x5, 0x08|0x04)
	d = binary.BigEndian.AppendUint32(d, uint32(len(tid)))
	d = append(d, tid...)
	binary.BigEndian.PutUint32(c[5:], uint32(len(d)))
	wantGood(t, "register with SPEC_I_PT", run(t, lu, a, c, d, 0))
	if keys := readKeys(t, lu, b2); len(keys) != 2 {
		t.Fatalf("got keys %v, want 2 registrations", keys)
	}
	c, d = prout(1, prWriteExclusive, 0x5, 0, 0)
	wantGood(t, "b reserves through port 2 (ALL_TG_PT)", run(t, lu, b2, c, d, 0))
	full := prin(t, lu, a, 3)
	if n := binary.BigEndian.Uint32(full[4:]); n < 2*24 {
		t.Errorf("READ FULL STATUS: got %d bytes of descriptors, want two", n)
	}
}

func TestReserve6(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	a, b := testNexus("a", "1", 1), testNexus("b", "2", 1)
	ready(t, lu, a)
	ready(t, lu, b)
	wantGood(t, "reserve", run(t, lu, a, []byte{opReserve6, 0, 0, 0, 0, 0}, nil, 0))
	if r := run(t, lu, b, make([]byte, 6), nil, 0); r.Status != StatusReservationConflict {
		t.Errorf("other TUR: got %#x, want conflict", r.Status)
	}
	wantGood(t, "inquiry from other", run(t, lu, b, []byte{opInquiry, 0, 0, 0, 36, 0}, nil, 36))
	wantGood(t, "release by other is a no-op", run(t, lu, b, []byte{opRelease6, 0, 0, 0, 0, 0}, nil, 0))
	lu.NexusLost(a)
	wantGood(t, "after nexus loss", run(t, lu, b, make([]byte, 6), nil, 0))
}

func TestAPTPLPersistence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lun0.pr")
	lu, dev := newTestLU(t, 64, LUConfig{PRStatePath: path})
	a, b := testNexus("a", "1", 1), testNexus("b", "2", 1)
	ready(t, lu, a)
	c, d := prout(0, 0, 0, 0xa, 0x01)
	wantGood(t, "register APTPL", run(t, lu, a, c, d, 0))
	c, d = prout(1, prExclusiveAccess, 0xa, 0, 0)
	wantGood(t, "reserve", run(t, lu, a, c, d, 0))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("state file: %v", err)
	}
	lu2, err := NewLogicalUnit(dev, LUConfig{Serial: "serial-1", PRStatePath: path})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	ready(t, lu2, b)
	if r := run(t, lu2, b, cdb10(opRead10, 0, 1), nil, 512); r.Status != StatusReservationConflict {
		t.Errorf("after restart: got status %#x, want conflict", r.Status)
	}
	if keys := readKeys(t, lu2, b); len(keys) != 1 || keys[0] != 0xa {
		t.Errorf("after restart: got keys %v, want [0xa]", keys)
	}
	ready(t, lu2, a)
	wantGood(t, "holder reads after restart", run(t, lu2, a, cdb10(opRead10, 0, 1), nil, 512))
	c, d = prout(0, 0, 0xa, 0xb, 0)
	wantGood(t, "re-register without APTPL", run(t, lu2, a, c, d, 0))
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("state file still there after APTPL=0: %v", err)
	}
	os.WriteFile(path, []byte(`{"version": 99}`), 0o600)
	if _, err := NewLogicalUnit(dev, LUConfig{Serial: "s", PRStatePath: path}); err == nil {
		t.Errorf("got nil error for unknown state version, want ErrPRState")
	}
}
