package scsi

import (
	"encoding/binary"
)

func opTUR(t *task) *checkCond { return nil }

func opRequestSenseFn(t *task) *checkCond {
	cdb := t.cdb[:6]
	if cdb[1]&0x01 != 0 {
		return invalidCDB(1, 0) // DESC: descriptor format not supported
	}
	t.data = requestSenseData(t, &checkCond{key: senseNoSense})
	return nil
}

// requestSenseData returns c as REQUEST SENSE parameter data, trimmed to the CDB's
// allocation length.
func requestSenseData(t *task, c *checkCond) []byte {
	d := c.appendSense(t.alloc(senseLen)[:0])
	if len(t.cdb) >= 6 {
		d = d[:min(len(d), int(t.cdb[4]))]
	}
	return d
}

func opStartStop(t *task) *checkCond {
	cdb := t.cdb[:6]
	if pc := cdb[4] >> 4; pc != 0 {
		// Power conditions other than START_VALID are accepted and ignored, except
		// reserved values.
		if pc == 0x4 || pc == 0x6 || pc > 0xb {
			return invalidCDB(4, 7)
		}
	}
	return nil
}

func opPreventAllowFn(t *task) *checkCond {
	cdb := t.cdb[:6]
	if cdb[4]&0x03 > 1 {
		return invalidCDB(4, 1)
	}
	return nil
}

func opServiceActionIn(t *task) *checkCond {
	switch t.cdb[1] & 0x1f {
	case saReadCapacity16:
		return t.lu.readCapacity16(t)
	case saGetLBAStatus:
		if t.lu.reserved.Load() && t.lu.conflicts(t, classRead) {
			return errConflict
		}
		return t.lu.getLBAStatus(t)
	}
	return invalidCDB(1, 4)
}

func opMaintenanceInFn(t *task) *checkCond {
	switch t.cdb[1] & 0x1f {
	case saReportTPG:
		return reportTPG(t)
	case saReportOpcodes:
		return reportOpcodes(t)
	}
	return invalidCDB(1, 4)
}

func opMaintenanceOutFn(t *task) *checkCond {
	// SET TARGET PORT GROUPS: ALUA is implicit only.
	return invalidCDB(1, 4)
}

// reportTPG answers REPORT TARGET PORT GROUPS from the nexus' port groups.
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
	hdr := 4
	if format == 1 {
		hdr = 8
	}
	d := make([]byte, hdr)
	if format == 1 {
		d[4] = 0x10 // format 1 (extended header)
	}
	for _, g := range groups {
		desc := make([]byte, 8, 8+4*len(g.PortIDs))
		desc[0] = 0x80 | byte(g.State)&0x0f // PREF=1 for the optimized one is optional
		if g.State != ALUAActiveOptimized {
			desc[0] = byte(g.State) & 0x0f
		}
		desc[1] = 0x80 | 0x08 | 0x04 | 0x02 | 0x01 // T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP
		binary.BigEndian.PutUint16(desc[2:], g.ID)
		desc[7] = byte(len(g.PortIDs))
		for _, id := range g.PortIDs {
			desc = append(desc, 0, 0, byte(id>>8), byte(id))
		}
		d = append(d, desc...)
	}
	binary.BigEndian.PutUint32(d, uint32(len(d)-4))
	t.data = d[:min(len(d), int(alloc))]
	return nil
}
