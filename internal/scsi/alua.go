package scsi

// ALUA (SPC-4 5.15): implicit asymmetric logical unit access. The transport describes
// the target port groups of the target in Nexus.Groups and the port a command came
// through in Nexus.Port; a transport that changes a group's state gives later commands
// a Nexus with the new Groups and calls AccessStateChanged on the target's units.

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// String returns the state's name as rampart's configuration spells it.
func (s PortGroupState) String() string {
	switch s {
	case ALUAActiveOptimized:
		return "active-optimized"
	case ALUAActiveNonOptimized:
		return "active-non-optimized"
	case ALUAStandby:
		return "standby"
	case ALUAUnavailable:
		return "unavailable"
	case ALUATransitioning:
		return "transitioning"
	}
	return fmt.Sprintf("state-%#x", uint8(s))
}

// ParsePortGroupState parses a configurable state: active-optimized (also "" and
// "ao"), active-non-optimized ("an"), standby, unavailable. Transitioning is not
// configurable.
func ParsePortGroupState(s string) (PortGroupState, error) {
	switch strings.ToLower(s) {
	case "", "active-optimized", "ao", "optimized":
		return ALUAActiveOptimized, nil
	case "active-non-optimized", "an", "non-optimized":
		return ALUAActiveNonOptimized, nil
	case "standby":
		return ALUAStandby, nil
	case "unavailable":
		return ALUAUnavailable, nil
	}
	return 0, fmt.Errorf("scsi: ALUA state %q: want active-optimized, active-non-optimized, standby or unavailable", s)
}

// portState returns the asymmetric access state of the port the nexus goes through:
// that of its group in n.Groups, active/optimized when the transport lists none.
func (n *Nexus) portState() PortGroupState {
	for i := range n.Groups {
		if n.Groups[i].ID == n.Port.GroupID {
			return n.Groups[i].State
		}
	}
	return ALUAActiveOptimized
}

// AccessStateChanged raises ASYMMETRIC ACCESS STATE CHANGED (2A/06) on every nexus
// through one of the target ports named (every nexus when none is named): call it
// after an implicit state change of a port group of the target (SPC-4 5.15.2.5).
func (lu *LogicalUnit) AccessStateChanged(portNames ...string) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	for _, ns := range lu.byID {
		if len(portNames) == 0 || containsString(portNames, ns.port) {
			ns.addUA(ascALUAChanged)
		}
	}
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// aluaRefuses returns the NOT READY condition for a command that the port's state
// does not allow, or nil. Active states allow everything; standby allows what SPC-4
// 5.15.2.4.4 lists (plus READ CAPACITY(16), as LIO does, so hosts can size the
// device); unavailable allows what 5.15.2.4.5 lists.
func aluaRefuses(st PortGroupState, cdb []byte) *checkCond {
	var asc uint16
	switch st {
	case ALUAActiveOptimized, ALUAActiveNonOptimized:
		return nil
	case ALUAStandby:
		asc = ascALUAStandby
	case ALUAUnavailable:
		asc = ascALUAUnavailable
	default:
		asc = ascALUATransitioning
	}
	op := cdb[0]
	var sa byte
	if len(cdb) > 1 {
		sa = cdb[1] & 0x1f
	}
	switch op {
	case opInquiry, opReportLUNs, opRequestSense:
		return nil
	case opMaintenanceIn:
		if sa == saReportTPG || sa == saReportOpcodes {
			return nil
		}
	case opMaintenanceOut:
		if sa == saSetTPG {
			return nil
		}
	}
	if st == ALUAStandby {
		switch op {
		case opModeSense6, opModeSense10, opModeSelect6, opModeSelect10, opPRIn, opPROut:
			return nil
		case opServiceActionIn16:
			if sa == saReadCapacity16 {
				return nil
			}
		}
	}
	return &checkCond{status: StatusCheckCondition, key: senseNotReady, asc: asc}
}

func opMaintenanceOutFn(t *task) *checkCond {
	// SET TARGET PORT GROUPS: ALUA is implicit only (TPGS 01b).
	return invalidCDB(1, 4)
}

// RTPG descriptor bits.
const (
	rtpgSupported     = 0x80 | 0x08 | 0x04 | 0x02 | 0x01 // T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP
	rtpgStatusNone    = 0x00
	rtpgStatusImplied = 0x02 // altered by implicit asymmetric logical unit access behaviour
)

// reportTPG answers REPORT TARGET PORT GROUPS from the nexus' port groups, in the
// length-only (format 0) or extended header (format 1) form.
func reportTPG(t *task) *checkCond {
	cdb := t.cdb[:12]
	alloc := binary.BigEndian.Uint32(cdb[6:])
	format := cdb[1] >> 5
	if format != 0 && format != 1 {
		return invalidCDB(1, 7)
	}
	groups := t.cmd.Nexus.Groups
	if len(groups) == 0 && t.cmd.Nexus.Port.RelativeID != 0 {
		p := t.cmd.Nexus.Port
		groups = []PortGroup{{ID: p.GroupID, State: ALUAActiveOptimized, PortIDs: []uint16{p.RelativeID}}}
	}
	n := 4
	if format == 1 {
		n = 8
	}
	for _, g := range groups {
		n += 8 + 4*len(g.PortIDs)
	}
	d := t.alloc(n)
	if format == 1 {
		d[4] = 0x10 // format type 1; byte 5, the implicit transition time, is 0
	}
	off := 8
	if format == 0 {
		off = 4
	}
	for _, g := range groups {
		desc := d[off:]
		desc[0] = byte(g.State) & 0x0f // PREF 0: no group is preferred over another
		desc[1] = rtpgSupported
		binary.BigEndian.PutUint16(desc[2:], g.ID)
		if g.Altered {
			desc[5] = rtpgStatusImplied
		}
		desc[7] = byte(len(g.PortIDs))
		for i, id := range g.PortIDs {
			binary.BigEndian.PutUint16(desc[8+4*i+2:], id)
		}
		off += 8 + 4*len(g.PortIDs)
	}
	binary.BigEndian.PutUint32(d, uint32(len(d)-4))
	t.data = d[:min(len(d), int(alloc))]
	return nil
}
