package scsi

import (
	"encoding/binary"
	"testing"
)

// aluaNexus is a nexus through port 2 (group 2) of a target with groups 1 and 2,
// group 2 in state st.
func aluaNexus(init string, st PortGroupState) *Nexus {
	n := testNexus(init, "1", 2)
	n.Groups = []PortGroup{{ID: 1, State: ALUAActiveOptimized, PortIDs: []uint16{1}}, {ID: 2, State: st, PortIDs: []uint16{2}}}
	return n
}

func TestALUAAccessStates(t *testing.T) {
	rc16 := cdb16(opServiceActionIn16, 0, 32)
	rc16[1] = saReadCapacity16
	rtpg := []byte{opMaintenanceIn, saReportTPG, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}
	cmds := []struct {
		name string
		cdb  []byte
		out  []byte
		in   uint32
		// allowed in standby / unavailable
		standby, unavailable bool
	}{
		{"TEST UNIT READY", make([]byte, 6), nil, 0, false, false},
		{"READ(10)", cdb10(opRead10, 0, 1), nil, 512, false, false},
		{"WRITE(10)", cdb10(opWrite10, 0, 1), fill(512, 'x'), 0, false, false},
		{"SYNCHRONIZE CACHE(10)", cdb10(opSyncCache10, 0, 0), nil, 0, false, false},
		{"READ CAPACITY(10)", cdb10(opReadCapacity10, 0, 0), nil, 8, false, false},
		{"READ CAPACITY(16)", rc16, nil, 32, true, false},
		{"MODE SENSE(6)", []byte{opModeSense6, 0, 0x3f, 0, 255, 0}, nil, 255, true, false},
		{"PERSISTENT RESERVE IN", []byte{opPRIn, 0, 0, 0, 0, 0, 0, 1, 0, 0}, nil, 256, true, false},
		{"INQUIRY", []byte{opInquiry, 0, 0, 0, 96, 0}, nil, 96, true, true},
		{"REQUEST SENSE", []byte{opRequestSense, 0, 0, 0, 18, 0}, nil, 18, true, true},
		{"REPORT TARGET PORT GROUPS", rtpg, nil, 256, true, true},
		{"REPORT LUNS", []byte{opReportLUNs, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, nil, 256, true, true},
	}
	states := []struct {
		st   PortGroupState
		asc  uint16
		pick func(allowedStandby, allowedUnavail bool) bool
	}{
		{ALUAActiveOptimized, 0, func(bool, bool) bool { return true }},
		{ALUAActiveNonOptimized, 0, func(bool, bool) bool { return true }},
		{ALUAStandby, ascALUAStandby, func(s, _ bool) bool { return s }},
		{ALUAUnavailable, ascALUAUnavailable, func(_, u bool) bool { return u }},
	}
	for _, s := range states {
		lu, _ := newTestLU(t, 64, LUConfig{})
		n := aluaNexus("a", ALUAActiveOptimized)
		ready(t, lu, n)
		n = aluaNexus("a", s.st) // the transport's new description of the same nexus
		for _, c := range cmds {
			t.Run(s.st.String()+"/"+c.name, func(t *testing.T) {
				r := run(t, lu, n, c.cdb, c.out, c.in)
				if s.pick(c.standby, c.unavailable) {
					wantGood(t, c.name, r)
					return
				}
				wantSense(t, c.name, r, senseNotReady, s.asc)
			})
		}
	}
}

func TestALUAStateChangedUnitAttention(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	a := aluaNexus("a", ALUAActiveOptimized)
	b := testNexus("b", "2", 1)
	other := testNexus("c", "3", 1)
	other.Port.Name = "iqn.2026-11.org.example:another,t,0x1"
	for _, n := range []*Nexus{a, b, other} {
		ready(t, lu, n)
	}
	lu.AccessStateChanged(a.Port.Name, b.Port.Name)
	a = aluaNexus("a", ALUAStandby)
	// INQUIRY does not consume the unit attention; REQUEST SENSE returns it.
	wantGood(t, "inquiry", run(t, lu, a, []byte{opInquiry, 0, 0, 0, 96, 0}, nil, 96))
	r := run(t, lu, a, []byte{opRequestSense, 0, 0, 0, 18, 0}, nil, 18)
	wantGood(t, "request sense", r)
	if asc := uint16(r.DataIn[12])<<8 | uint16(r.DataIn[13]); r.DataIn[2] != senseUnitAttention || asc != ascALUAChanged {
		t.Errorf("REQUEST SENSE on the standby path: got key %#x ASC %04x, want UNIT ATTENTION 2A/06", r.DataIn[2], asc)
	}
	wantSense(t, "TUR on the standby path after the UA", run(t, lu, a, make([]byte, 6), nil, 0), senseNotReady, ascALUAStandby)
	wantSense(t, "TUR on the optimized path", run(t, lu, b, make([]byte, 6), nil, 0), senseUnitAttention, ascALUAChanged)
	wantGood(t, "TUR on the optimized path, again", run(t, lu, b, make([]byte, 6), nil, 0))
	wantGood(t, "TUR through another target's port", run(t, lu, other, make([]byte, 6), nil, 0))
	lu.AccessStateChanged()
	wantSense(t, "TUR through any port after a change of all", run(t, lu, other, make([]byte, 6), nil, 0), senseUnitAttention, ascALUAChanged)
}

func TestReportTargetPortGroupsFormats(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	n := testNexus("a", "1", 1)
	n.Groups = []PortGroup{
		{ID: 1, State: ALUAActiveOptimized, PortIDs: []uint16{1}},
		{ID: 7, State: ALUAStandby, PortIDs: []uint16{2, 3}, Altered: true},
	}
	ready(t, lu, n)
	tests := []struct {
		name   string
		format byte
		alloc  uint32
		want   []byte
	}{
		{"length only", 0, 256, []byte{
			0, 0, 0, 28,
			0x00, 0x8f, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
			0x02, 0x8f, 0, 7, 0, 0x02, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3}},
		{"extended header", 1, 256, []byte{
			0, 0, 0, 32, 0x10, 0, 0, 0,
			0x00, 0x8f, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
			0x02, 0x8f, 0, 7, 0, 0x02, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3}},
		{"truncated to the allocation length", 1, 10, []byte{0, 0, 0, 32, 0x10, 0, 0, 0, 0x00, 0x8f}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := []byte{opMaintenanceIn, saReportTPG | tt.format<<5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(c[6:], tt.alloc)
			r := run(t, lu, n, c, nil, tt.alloc)
			wantGood(t, tt.name, r)
			if string(r.DataIn) != string(tt.want) {
				t.Errorf("got %x, want %x", r.DataIn, tt.want)
			}
		})
	}
	c := []byte{opMaintenanceIn, saReportTPG | 2<<5, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}
	wantSense(t, "format 2", run(t, lu, n, c, nil, 256), senseIllegalRequest, ascInvalidFieldCDB)
	c = []byte{opMaintenanceOut, saSetTPG, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0}
	wantSense(t, "SET TARGET PORT GROUPS (implicit ALUA only)", run(t, lu, n, c, make([]byte, 4), 0), senseIllegalRequest, ascInvalidFieldCDB)
}

func TestParsePortGroupState(t *testing.T) {
	for _, st := range []PortGroupState{ALUAActiveOptimized, ALUAActiveNonOptimized, ALUAStandby, ALUAUnavailable} {
		got, err := ParsePortGroupState(st.String())
		if err != nil || got != st {
			t.Errorf("ParsePortGroupState(%q): got %v, %v, want %v", st.String(), got, err, st)
		}
	}
	if st, err := ParsePortGroupState(""); err != nil || st != ALUAActiveOptimized {
		t.Errorf(`ParsePortGroupState(""): got %v, %v, want active-optimized`, st, err)
	}
	for _, bad := range []string{"transitioning", "offline", "active"} {
		if _, err := ParsePortGroupState(bad); err == nil {
			t.Errorf("ParsePortGroupState(%q): got no error", bad)
		}
	}
}
