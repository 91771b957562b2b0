package scsi

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
