package scsi

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
)

// SCSI operation codes this package knows.
const (
	opTestUnitReady      = 0x00
	opRequestSense       = 0x03
	opRead6              = 0x08
	opWrite6             = 0x0a
	opInquiry            = 0x12
	opModeSelect6        = 0x15
	opReserve6           = 0x16
	opRelease6           = 0x17
	opModeSense6         = 0x1a
	opStartStopUnit      = 0x1b
	opPreventAllow       = 0x1e
	opReadCapacity10     = 0x25
	opRead10             = 0x28
	opWrite10            = 0x2a
	opWriteVerify10      = 0x2e
	opVerify10           = 0x2f
	opPrefetch10         = 0x34
	opSyncCache10        = 0x35
	opWriteSame10        = 0x41
	opUnmap              = 0x42
	opSanitize           = 0x48
	opModeSelect10       = 0x55
	opReserve10          = 0x56
	opRelease10          = 0x57
	opModeSense10        = 0x5a
	opPRIn               = 0x5e
	opPROut              = 0x5f
	opExtendedCopy       = 0x83
	opReceiveCopyResults = 0x84
	opRead16             = 0x88
	opCompareAndWrite    = 0x89
	opWrite16            = 0x8a
	opORWrite16          = 0x8b
	opWriteVerify16      = 0x8e
	opVerify16           = 0x8f
	opPrefetch16         = 0x90
	opSyncCache16        = 0x91
	opWriteSame16        = 0x93
	opServiceActionIn16  = 0x9e
	opReportLUNs         = 0xa0
	opMaintenanceIn      = 0xa3
	opMaintenanceOut     = 0xa4
	opRead12             = 0xa8
	opWrite12            = 0xaa
	opWriteVerify12      = 0xae
	opVerify12           = 0xaf
)

// Service actions.
const (
	saReadCapacity16   = 0x10
	saGetLBAStatus     = 0x12
	saReportTPG        = 0x0a
	saReportOpcodes    = 0x0c
	saSetTPG           = 0x0a
	wellKnownReportLUN = 0xc101
)

// task is one command in flight inside a logical unit.
type task struct {
	ctx  context.Context
	lu   *LogicalUnit
	cmd  *Command
	ns   *nexusState
	cdb  []byte
	data []byte // data-in
	// inLen is the data-in length the command produced when larger than data (a
	// read trimmed to the initiator's expected length), for residuals.
	inLen int64
	// outLen is the data-out length the CDB asks for, for residuals (-1: none).
	outLen int64
}

// alloc returns an n-byte zeroed data-in buffer, from cmd.Buf when it is big enough.
func (t *task) alloc(n int) []byte {
	if n <= cap(t.cmd.Buf) {
		b := t.cmd.Buf[:n]
		clear(b)
		return b
	}
	return make([]byte, n)
}

// allocNoClear is alloc for buffers the caller overwrites entirely.
func (t *task) allocNoClear(n int) []byte {
	if n <= cap(t.cmd.Buf) {
		return t.cmd.Buf[:n]
	}
	return make([]byte, n)
}

// dataOut returns the parameter data of a command whose CDB says n bytes, limited to
// what the initiator sent.
func (t *task) dataOut(n int) []byte {
	t.outLen = int64(n)
	d := t.cmd.DataOut
	if len(d) > n {
		d = d[:n]
	}
	return d
}

// taskPool recycles tasks so the read/write path allocates nothing per command.
var taskPool = sync.Pool{New: func() any { return new(task) }}

// emptyNexus stands in for a nil Command.Nexus.
var emptyNexus = &Nexus{}

func execute(ctx context.Context, luns LUNMap, cmd *Command, resp *Response) {
	*resp = Response{}
	if len(cmd.CDB) == 0 {
		errInvalidOpcode.fill(resp)
		return
	}
	if cmd.Nexus == nil {
		cmd.Nexus = emptyNexus
	}
	op := cmd.CDB[0]
	if op == opReportLUNs {
		t := &task{ctx: ctx, cmd: cmd, cdb: cmd.CDB, outLen: -1}
		if c := reportLUNs(t, luns); c != nil {
			c.fill(resp)
			return
		}
		finish(t, resp)
		return
	}
	var lu *LogicalUnit
	if luns != nil {
		lu = luns.Lookup(cmd.LUN)
	}
	if lu == nil || lu.closed.Load() {
		noLUN(cmd, resp)
		return
	}
	lu.execute(ctx, cmd, resp)
}

// noLUN answers a command addressed to a LUN that is not mapped.
func noLUN(cmd *Command, resp *Response) {
	t := &task{cmd: cmd, cdb: cmd.CDB, outLen: -1}
	switch cmd.CDB[0] {
	case opInquiry:
		if len(cmd.CDB) < 6 {
			errInvalidOpcode.fill(resp)
			return
		}
		if cmd.CDB[1]&1 != 0 {
			errLUNotSupported.fill(resp)
			return
		}
		d := t.alloc(36)
		d[0] = 0x7f // peripheral qualifier 3, device type 0x1f
		d[2] = 0x06
		d[3] = 0x02
		d[4] = 31
		t.data = d[:min(36, int(binary.BigEndian.Uint16(cmd.CDB[3:])))]
		finish(t, resp)
	case opRequestSense:
		d := errLUNotSupported.appendSense(t.alloc(0)[:0])
		if len(cmd.CDB) >= 6 {
			d = d[:min(len(d), int(cmd.CDB[4]))]
		}
		t.data = d
		finish(t, resp)
	default:
		errLUNotSupported.fill(resp)
	}
}

// reportLUNs answers REPORT LUNS from the LUN map.
func reportLUNs(t *task, luns LUNMap) *checkCond {
	cdb := t.cdb
	if len(cdb) < 12 {
		return errInvalidOpcode
	}
	alloc := binary.BigEndian.Uint32(cdb[6:])
	if alloc < 16 {
		return invalidCDB(6, -1)
	}
	var list []uint64
	sel := cdb[2]
	switch sel {
	case 0x00, 0x02:
		if luns != nil {
			list = slices.Clone(luns.LUNs())
		}
		if sel == 0x02 {
			list = append(list, wellKnownReportLUN<<48)
		}
	case 0x01:
		list = []uint64{wellKnownReportLUN << 48}
	case 0x10, 0x11, 0x12:
		// Administrative LU / subsidiary variants: no such LUs here.
		if sel == 0x10 || sel == 0x12 {
			if luns != nil {
				list = slices.Clone(luns.LUNs())
			}
		}
	default:
		return invalidCDB(2, -1)
	}
	d := make([]byte, 8+8*len(list))
	binary.BigEndian.PutUint32(d, uint32(8*len(list)))
	for i, l := range list {
		binary.BigEndian.PutUint64(d[8+8*i:], encodeLUN(l))
	}
	t.data = d[:min(len(d), int(alloc))]
	return nil
}

// encodeLUN returns the 8-byte SAM LUN structure of a LUN number (peripheral or flat
// addressing); well-known LUNs (given shifted into the top 16 bits) pass unchanged.
func encodeLUN(l uint64) uint64 {
	if l>>56 == 0xc1 {
		return l
	}
	if l < 256 {
		return l << 48
	}
	if l < 1<<14 {
		return (0x4000 | l) << 48
	}
	return l
}

// finish fills resp for a command that succeeded with t.data as data-in, computing
// residuals against the initiator's expected lengths.
func finish(t *task, resp *Response) {
	resp.Status = StatusGood
	cmd := t.cmd
	if t.outLen >= 0 {
		exp := int64(cmd.ExpectedDataOut)
		switch {
		case t.outLen > exp:
			resp.Overflow, resp.Residual = true, uint32(t.outLen-exp)
		case t.outLen < exp:
			resp.Underflow, resp.Residual = true, uint32(exp-t.outLen)
		}
		return
	}
	n, exp := max(int64(len(t.data)), t.inLen), int64(cmd.ExpectedDataIn)
	switch {
	case n > exp:
		resp.Overflow, resp.Residual = true, uint32(n-exp)
		t.data = t.data[:min(exp, int64(len(t.data)))]
	case n < exp:
		resp.Underflow, resp.Residual = true, uint32(exp-n)
	}
	resp.DataIn = t.data
}

// execute runs one command on the logical unit.
func (lu *LogicalUnit) execute(ctx context.Context, cmd *Command, resp *Response) {
	ns := lu.nexus(cmd.Nexus)
	cdb := cmd.CDB
	op := cdb[0]
	h := handlers[op]
	t := taskPool.Get().(*task)
	*t = task{ctx: ctx, lu: lu, cmd: cmd, ns: ns, cdb: cdb, outLen: -1}
	defer func() { *t = task{}; taskPool.Put(t) }()
	switch op {
	case opInquiry, opReportLUNs:
	case opRequestSense:
		if a := ns.takeUA(); a != 0 {
			t.data = requestSenseData(t, unitAttention(a))
			finish(t, resp)
			return
		}
	default:
		if a := ns.takeUA(); a != 0 {
			unitAttention(a).fill(resp)
			return
		}
	}
	if h.fn == nil || len(cdb) < int(h.cdbLen) {
		errInvalidOpcode.fill(resp)
		return
	}
	if len(cmd.Nexus.Groups) > 0 {
		if c := aluaRefuses(cmd.Nexus.portState(), cdb); c != nil {
			c.fill(resp)
			return
		}
	}
	if lu.reserved.Load() && lu.conflicts(t, h.class) {
		errConflict.fill(resp)
		return
	}
	if c := h.fn(t); c != nil {
		c.fill(resp)
		return
	}
	finish(t, resp)
}

// StaticLUNs is a fixed LUNMap.
type StaticLUNs map[uint64]*LogicalUnit

var _ LUNMap = StaticLUNs(nil)

// Lookup returns the logical unit at lun.
func (s StaticLUNs) Lookup(lun uint64) *LogicalUnit { return s[lun] }

// LUNs lists the LUNs in ascending order.
func (s StaticLUNs) LUNs() []uint64 {
	l := make([]uint64, 0, len(s))
	for k := range s {
		l = append(l, k)
	}
	slices.Sort(l)
	return l
}
