package scsi

import "encoding/binary"

// handler is how the logical unit runs one operation code.
type handler struct {
	fn     func(*task) *checkCond
	cdbLen uint8
	class  conflictClass
	sas    []byte // service actions reported by REPORT SUPPORTED OPERATION CODES
}

var handlers [256]handler

func init() {
	h := func(op byte, n uint8, cl conflictClass, fn func(*task) *checkCond, sas ...byte) {
		handlers[op] = handler{fn: fn, cdbLen: n, class: cl, sas: sas}
	}
	h(opTestUnitReady, 6, classAllowed, opTUR)
	h(opRequestSense, 6, classAlways, opRequestSenseFn)
	h(opInquiry, 6, classAlways, opInquiryFn)
	h(opRead6, 6, classRead, opRead)
	h(opRead10, 10, classRead, opRead)
	h(opRead12, 12, classRead, opRead)
	h(opRead16, 16, classRead, opRead)
	h(opWrite6, 6, classWrite, opWrite)
	h(opWrite10, 10, classWrite, opWrite)
	h(opWrite12, 12, classWrite, opWrite)
	h(opWrite16, 16, classWrite, opWrite)
	h(opWriteVerify10, 10, classWrite, opWriteVerify)
	h(opWriteVerify12, 12, classWrite, opWriteVerify)
	h(opWriteVerify16, 16, classWrite, opWriteVerify)
	h(opVerify10, 10, classRead, opVerify)
	h(opVerify12, 12, classRead, opVerify)
	h(opVerify16, 16, classRead, opVerify)
	h(opORWrite16, 16, classWrite, opORWrite)
	h(opCompareAndWrite, 16, classWrite, doCompareAndWrite)
	h(opPrefetch10, 10, classRead, opPrefetch)
	h(opPrefetch16, 16, classRead, opPrefetch)
	h(opSyncCache10, 10, classWrite, opSyncCache)
	h(opSyncCache16, 16, classWrite, opSyncCache)
	h(opWriteSame10, 10, classWrite, opWriteSame)
	h(opWriteSame16, 16, classWrite, opWriteSame)
	h(opUnmap, 10, classWrite, doUnmap)
	h(opReadCapacity10, 10, classAllowed, doReadCapacity10)
	h(opServiceActionIn16, 16, classAllowed, opServiceActionIn, saReadCapacity16, saGetLBAStatus)
	h(opModeSense6, 6, classRead, opModeSense)
	h(opModeSense10, 10, classRead, opModeSense)
	h(opModeSelect6, 6, classWrite, opModeSelect)
	h(opModeSelect10, 10, classWrite, opModeSelect)
	h(opStartStopUnit, 6, classWrite, opStartStop)
	h(opPreventAllow, 6, classAllowed, opPreventAllowFn)
	h(opReserve6, 6, classReserve, opReserve)
	h(opReserve10, 10, classReserve, opReserve)
	h(opRelease6, 6, classReserve, opRelease)
	h(opRelease10, 10, classReserve, opRelease)
	h(opPRIn, 10, classPR, opPRInFn, 0, 1, 2, 3)
	h(opPROut, 10, classPR, opPROutFn, 0, 1, 2, 3, 4, 5, 6, 7)
	h(opMaintenanceIn, 12, classAlways, opMaintenanceInFn, saReportTPG, saReportOpcodes)
	h(opMaintenanceOut, 12, classWrite, opMaintenanceOutFn)
}

// cdbUsage returns the CDB usage bitmap of op (service action sa).
func cdbUsage(op, sa byte, hasSA bool) []byte {
	n := int(handlers[op].cdbLen)
	u := make([]byte, n)
	u[0] = op
	for i := 1; i < n-1; i++ {
		u[i] = 0xff
	}
	if hasSA {
		u[1] = 0xe0 | sa
	}
	u[n-1] = 0x07
	return u
}

// timeoutsDescriptor is the command timeouts descriptor (no timeouts specified).
var timeoutsDescriptor = []byte{0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// reportOpcodes answers REPORT SUPPORTED OPERATION CODES.
func reportOpcodes(t *task) *checkCond {
	cdb := t.cdb[:12]
	rctd := cdb[2]&0x80 != 0
	opt := cdb[2] & 0x07
	reqOp := cdb[3]
	reqSA := binary.BigEndian.Uint16(cdb[4:])
	alloc := binary.BigEndian.Uint32(cdb[6:])
	var d []byte
	switch opt {
	case 0:
		d = make([]byte, 4)
		for op := 0; op < 256; op++ {
			h := handlers[op]
			if h.fn == nil {
				continue
			}
			add := func(sa byte, hasSA bool) {
				var e [8]byte
				e[0] = byte(op)
				if hasSA {
					e[3] = sa
					e[5] |= 0x01
				}
				if rctd {
					e[5] |= 0x02
				}
				binary.BigEndian.PutUint16(e[6:], uint16(h.cdbLen))
				d = append(d, e[:]...)
				if rctd {
					d = append(d, timeoutsDescriptor...)
				}
			}
			if len(h.sas) == 0 {
				add(0, false)
			}
			for _, sa := range h.sas {
				add(sa, true)
			}
		}
		binary.BigEndian.PutUint32(d, uint32(len(d)-4))
	case 1, 2, 3:
		h := handlers[reqOp]
		hasSA := len(h.sas) > 0
		if opt == 1 && hasSA {
			return invalidCDB(2, 2)
		}
		if opt == 2 && !hasSA && h.fn != nil {
			return invalidCDB(2, 2)
		}
		if opt == 1 && reqSA != 0 {
			reqSA = 0
		}
		supported := h.fn != nil
		if hasSA && (opt != 1) {
			supported = false
			for _, sa := range h.sas {
				if uint16(sa) == reqSA {
					supported = true
				}
			}
		}
		d = make([]byte, 4)
		if !supported {
			d[1] = 0x01
		} else {
			d[1] = 0x03
			u := cdbUsage(reqOp, byte(reqSA), hasSA)
			binary.BigEndian.PutUint16(d[2:], uint16(len(u)))
			d = append(d, u...)
			if rctd {
				d[1] |= 0x80
				d = append(d, timeoutsDescriptor...)
			}
		}
	default:
		return invalidCDB(2, 2)
	}
	t.data = d[:min(len(d), int(alloc))]
	return nil
}
