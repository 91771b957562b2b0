package target

import (
	"context"
	"encoding/binary"
	"testing"
)

// scsiCmd runs one non-data or read command and returns its result.
func (i *ini) scsiCmd(cdb []byte, alloc uint32) result {
	i.t.Helper()
	p := i.cmdPDU(cdb, alloc > 0, alloc, nil, true)
	i.send(p)
	return i.readResult(p.ITT())
}

func senseASC(r result) (key byte, asc uint16) {
	if len(r.sense) < 14 {
		return 0, 0
	}
	return r.sense[2] & 0x0f, binary.BigEndian.Uint16(r.sense[12:])
}

func rtpgStates(t *testing.T, i *ini) map[uint16][2]byte {
	t.Helper()
	r := i.scsiCmd([]byte{0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 256)
	if r.status != 0 || len(r.data) < 4 {
		t.Fatalf("REPORT TARGET PORT GROUPS: got status %#x, %d bytes", r.status, len(r.data))
	}
	out := map[uint16][2]byte{}
	for d := r.data[4:]; len(d) >= 8; {
		n := 8 + 4*int(d[7])
		out[binary.BigEndian.Uint16(d[2:])] = [2]byte{d[0] & 0x0f, d[5]}
		d = d[min(n, len(d)):]
	}
	return out
}

func TestALUAApply(t *testing.T) {
	cfg := testConfig("itmem:alua:1048576")
	cfg.Targets[0].PortalGroups = []PortalGroup{
		{Tag: 1, Portals: []string{"127.0.0.1:0"}},
		{Tag: 2, Portals: []string{"127.0.0.2:0"}, ALUA: ALUAActiveNonOptimized},
	}
	s := startServer(t, cfg)
	addrs := s.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("got %d portals, want 2", len(addrs))
	}
	// Addrs are sorted by configured portal: [0] is TPG 1, [1] is TPG 2.
	p1, p2 := dial(t, addrs[0]), dial(t, addrs[1])
	p2.isid[5] = 9
	p1.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	p2.mustLogin(loginOpts{target: testIQN, initiator: testInit})

	r := p2.scsiCmd([]byte{0x12, 0, 0, 0, 96, 0}, 96)
	if r.status != 0 || r.data[5]&0x30 != 0x10 {
		t.Fatalf("standard INQUIRY: got status %#x TPGS byte %#x, want implicit ALUA (0x10)", r.status, r.data[5])
	}
	want := map[uint16][2]byte{1: {0, 0}, 2: {1, 0}}
	if got := rtpgStates(t, p1); got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("RTPG before: got %v, want %v", got, want)
	}
	if r := p2.read(0, 1); r.status != 0 {
		t.Fatalf("read through the non-optimized group: got status %#x, want GOOD", r.status)
	}

	tests := []struct {
		state   string
		code    byte
		wantKey byte
		wantASC uint16
	}{
		{ALUAStandby, 2, 0x2, 0x040b},
		{ALUAUnavailable, 3, 0x2, 0x040c},
		{ALUAActiveNonOptimized, 1, 0, 0},
		{ALUAActiveOptimized, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			cfg.Targets[0].PortalGroups[1].ALUA = tt.state
			if err := s.Apply(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			// Every nexus of the target hears of the change once.
			for name, i := range map[string]*ini{"TPG 1": p1, "TPG 2": p2} {
				r := i.scsiCmd(make([]byte, 6), 0)
				if k, asc := senseASC(r); r.status != 2 || k != 6 || asc != 0x2a06 {
					t.Fatalf("%s: first TEST UNIT READY: got status %#x sense %x, want UNIT ATTENTION 2A/06", name, r.status, r.sense)
				}
			}
			if got := rtpgStates(t, p2); got[2] != [2]byte{tt.code, 0x02} || got[1] != [2]byte{0, 0} {
				t.Fatalf("RTPG: got %v, want group 2 state %d status 02h, group 1 unchanged", got, tt.code)
			}
			r := p2.read(0, 1)
			k, asc := senseASC(r)
			if tt.wantKey == 0 && r.status != 0 {
				t.Fatalf("read through TPG 2: got status %#x sense %x, want GOOD", r.status, r.sense)
			}
			if tt.wantKey != 0 && (r.status != 2 || k != tt.wantKey || asc != tt.wantASC) {
				t.Fatalf("read through TPG 2: got status %#x sense %x, want NOT READY %04x", r.status, r.sense, tt.wantASC)
			}
			if r := p1.read(0, 1); r.status != 0 {
				t.Fatalf("read through TPG 1: got status %#x, want GOOD", r.status)
			}
		})
	}
	// An Apply that changes no state raises no unit attention.
	if err := s.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if r := p1.scsiCmd(make([]byte, 6), 0); r.status != 0 {
		t.Fatalf("TEST UNIT READY after an unchanged Apply: got status %#x sense %x", r.status, r.sense)
	}
}

func TestValidateALUA(t *testing.T) {
	cfg := testConfig("itmem:x:1048576")
	cfg.Targets[0].PortalGroups[0].ALUA = "sleepy"
	if err := Validate(cfg); err == nil {
		t.Fatal("got no error for ALUA state \"sleepy\"")
	}
	for _, st := range []string{"", ALUAActiveOptimized, ALUAActiveNonOptimized, ALUAStandby, ALUAUnavailable} {
		cfg.Targets[0].PortalGroups[0].ALUA = st
		if err := Validate(cfg); err != nil {
			t.Errorf("ALUA %q: %v", st, err)
		}
	}
}
