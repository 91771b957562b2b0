package target

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/rampart-storage/rampart/internal/iscsi"
	"github.com/rampart-storage/rampart/internal/scsi"
)

// task is one SCSI command of a connection, from its SCSI Command PDU to its response.
type task struct {
	c      *conn
	itt    uint32
	lunRaw uint64
	lu     *scsi.LogicalUnit
	luns   scsi.LUNMap
	cmd    scsi.Command
	resp   scsi.Response
	cdb    [16]byte
	cdbExt []byte

	edtl        uint32
	outBuf      []byte  // data-out
	outBufP     *[]byte // its pooled storage
	inBufP      *[]byte // pooled storage of the data-in
	received    uint32
	unsolEnd    uint32 // end of the unsolicited data (immediate + Data-Out with TTT 0xffffffff)
	unsolDone   bool
	nextR2T     uint32
	r2tSN       uint32
	outstanding uint32
	executing   bool
	delivered   bool // its turn in CmdSN order has come (see cmdWindow)
	counted     bool
	aborted     atomic.Bool
	done        chan struct{} // closed when the task is answered or dropped
	doneOnce    sync.Once
	senseBuf    []byte
	seqStarted  bool
	seqTTT      uint32
	seqDataSN   uint32
}

func (t *task) release() {
	t.doneOnce.Do(func() {
		putBuf(t.outBufP)
		putBuf(t.inBufP)
		t.outBuf, t.outBufP, t.inBufP = nil, nil, nil
		close(t.done)
	})
}

// Reject reasons (RFC 7143 section 11.17.1).
const (
	rejectDataDigest   = 0x02
	rejectSNACK        = 0x03
	rejectProtocol     = 0x04
	rejectNotSupported = 0x05
	rejectTaskInProg   = 0x07
	rejectInvalidField = 0x09
)

// reject answers req with a Reject PDU carrying its header.
func (c *conn) reject(req *iscsi.PDU, reason byte) {
	m := newMsg(iscsi.OpReject, statAdvance)
	m.pdu.BHS[1] = iscsi.FlagFinal
	m.pdu.BHS[2] = reason
	m.pdu.SetU32(16, iscsi.ReservedTag)
	m.pdu.Data = append(make([]byte, 0, iscsi.BHSLen), req.BHS[:]...)
	c.send(m)
}

// DecodeLUN turns an 8-byte SAM LUN into a LUN number (peripheral and flat space
// addressing); other methods come back as the raw value, which maps no unit.
func DecodeLUN(raw uint64) uint64 {
	b0, b1 := byte(raw>>56), byte(raw>>48)
	switch b0 >> 6 {
	case 0:
		if b0 == 0 {
			return uint64(b1)
		}
	case 1:
		return uint64(b0&0x3f)<<8 | uint64(b1)
	}
	return raw
}

func (c *conn) scsiCommand(req *iscsi.PDU) {
	c.mu.Lock()
	if c.loggingOut {
		c.mu.Unlock()
		c.reject(req, rejectProtocol)
		return
	}
	_, dup := c.tasks[req.ITT()]
	c.mu.Unlock()
	if dup {
		c.reject(req, rejectTaskInProg)
		return
	}
	flags := req.Flags()
	edtl := req.U32(20)
	write := flags&iscsi.FlagWrite != 0
	immData := req.Data
	p := &c.sess.params
	if uint32(len(immData)) > edtl || (len(immData) > 0 && (!write || !p.ImmediateData)) ||
		uint32(len(immData)) > p.FirstBurstLength {
		c.reject(req, rejectInvalidField)
		return
	}
	sn, imm := req.U32(24), req.Immediate()
	if !c.win.receive(sn, imm, true) {
		c.log.Debug("dropping command outside the CmdSN window", "cmdsn", sn, "itt", req.ITT())
		return
	}
	luns := *c.sess.luns.Load()
	t := &task{c: c, itt: req.ITT(), lunRaw: req.LUN(), edtl: edtl, luns: luns, counted: true, done: make(chan struct{})}
	t.cmd.LUN = DecodeLUN(t.lunRaw)
	t.lu = luns.Lookup(t.cmd.LUN)
	t.cdb = [16]byte(req.BHS[32:48])
	t.cmd.CDB = t.cdb[:]
	if ext := extendedCDB(req.AHS); ext != nil {
		t.cdbExt = append(append(make([]byte, 0, 16+len(ext)), t.cdb[:]...), ext...)
		t.cmd.CDB = t.cdbExt
	}
	t.cmd.Attr = scsi.TaskAttr(flags & 7)
	if t.cmd.Attr > scsi.TaskACA {
		t.cmd.Attr = scsi.TaskSimple
	}
	t.cmd.Tag = uint64(t.itt)
	if flags&iscsi.FlagRead != 0 {
		t.cmd.ExpectedDataIn = edtl
	}
	if write {
		t.cmd.ExpectedDataOut = edtl
	}
	c.mu.Lock()
	c.tasks[t.itt] = t
	c.mu.Unlock()
	if write && edtl > 0 && edtl <= MaxTransferLength {
		// Data-out is gathered from now on, even while the command waits for its turn
		// in CmdSN order; R2Ts and execution wait for delivery.
		t.outBufP = getBuf(edtl)
		t.outBuf = (*t.outBufP)[:edtl]
		copy(t.outBuf, immData)
		t.received = uint32(len(immData))
		final := flags&iscsi.FlagFinal != 0
		switch {
		case final || p.InitialR2T:
			t.unsolEnd, t.unsolDone = t.received, true
		default:
			t.unsolEnd = min(p.FirstBurstLength, edtl)
		}
		t.nextR2T = t.unsolEnd
	}
	c.win.deliver(sn, imm, t)
}

// deliver starts a SCSI task whose turn in CmdSN order has come: it runs once its
// data-out is complete, and asks for what is missing with R2Ts.
func (t *task) deliver() {
	c := t.c
	t.delivered = true
	if t.aborted.Load() || t.executing {
		return // aborted while held, or already answered (data phase error)
	}
	t.cmd.Nexus = c.sess.nexus.Load()
	switch {
	case t.edtl > MaxTransferLength:
		// A well-formed command asking more than this target buffers: a SCSI error the
		// initiator can act on, not a Reject (libiscsi stalls on a rejected command).
		t.executing = true
		t.cmd.ExpectedDataIn = 0
		scsi.TransferTooLong(&t.resp, t.edtl)
		m := newMsg(iscsi.OpSCSIResponse, statAdvance)
		m.task = t
		c.send(m)
	case t.outBuf == nil || (t.received == t.edtl && t.outstanding == 0):
		c.execute(t)
	case t.unsolDone:
		c.sendR2Ts(t)
	}
}

// extendedCDB returns the additional CDB bytes of an Extended CDB AHS (type 1).
func extendedCDB(ahs []byte) []byte {
	for len(ahs) >= 4 {
		n := int(binary.BigEndian.Uint16(ahs[0:2]))
		typ := ahs[2]
		total := 3 + n
		total += (4 - total%4) % 4
		if n < 1 || total > len(ahs) {
			return nil
		}
		if typ == 1 {
			return ahs[4 : 3+n]
		}
		ahs = ahs[total:]
	}
	return nil
}

// sendR2Ts asks for solicited data up to MaxOutstandingR2T bursts at a time.
func (c *conn) sendR2Ts(t *task) {
	p := &c.sess.params
	for t.outstanding < max(p.MaxOutstandingR2T, 1) && t.nextR2T < t.edtl {
		n := min(p.MaxBurstLength, t.edtl-t.nextR2T)
		c.nextTT++
		if c.nextTT == iscsi.ReservedTag || c.nextTT == pingTTT {
			c.nextTT = 1
		}
		m := newMsg(iscsi.OpR2T, statKeep)
		m.pdu.BHS[1] = iscsi.FlagFinal
		m.pdu.SetLUN(t.lunRaw)
		m.pdu.SetU32(16, t.itt)
		m.pdu.SetU32(20, c.nextTT)
		m.pdu.SetU32(36, t.r2tSN)
		m.pdu.SetU32(40, t.nextR2T)
		m.pdu.SetU32(44, n)
		t.r2tSN++
		t.nextR2T += n
		t.outstanding++
		c.send(m)
	}
}

func (c *conn) dataOut(req *iscsi.PDU) error {
	c.mu.Lock()
	t := c.tasks[req.ITT()]
	c.mu.Unlock()
	if t == nil || t.executing || t.outBuf == nil {
		// Data for an aborted or finished task is dropped (RFC 7143 11.7).
		return nil
	}
	ttt, off, n := req.U32(20), req.U32(40), uint32(len(req.Data))
	if uint64(off)+uint64(n) > uint64(t.edtl) || (ttt == iscsi.ReservedTag && (t.unsolDone || off+n > t.unsolEnd)) {
		c.reject(req, rejectProtocol)
		return errProtocol
	}
	// DataPDUInOrder and DataSequenceInOrder are Yes: data arrives at increasing
	// offsets, and DataSN counts from 0 in every sequence. At ERL 0 a gap cannot be
	// recovered: the command ends with ABORTED COMMAND, DATA PHASE ERROR, and the
	// rest of its data is dropped.
	sn := req.U32(36)
	if !t.seqStarted || ttt != t.seqTTT {
		t.seqStarted, t.seqTTT, t.seqDataSN = true, ttt, 0
	}
	if sn != t.seqDataSN || off != t.received {
		c.log.Info("Data-Out out of order", "itt", t.itt, "datasn", sn, "offset", off, "want_datasn", t.seqDataSN, "want_offset", t.received)
		c.failTask(t, senseDataPhaseError)
		return nil
	}
	t.seqDataSN++
	copy(t.outBuf[off:], req.Data)
	t.received += n
	final := req.Flags()&iscsi.FlagFinal != 0
	if final {
		if ttt == iscsi.ReservedTag {
			t.unsolDone = true
		} else if t.outstanding > 0 {
			t.outstanding--
		}
	}
	if !t.delivered {
		return nil // task.deliver executes it or sends its R2Ts
	}
	if t.received >= t.edtl && t.outstanding == 0 {
		c.execute(t)
		return nil
	}
	if final && t.unsolDone {
		c.sendR2Ts(t)
	}
	return nil
}

// senseDataPhaseError is ABORTED COMMAND, DATA PHASE ERROR (4Bh/00h) in fixed format.
var senseDataPhaseError = []byte{0x70, 0, 0x0b, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x4b, 0, 0, 0, 0, 0}

// failTask answers a task with CHECK CONDITION and sense without executing it.
func (c *conn) failTask(t *task, sense []byte) {
	t.executing = true
	t.resp = scsi.Response{Status: scsi.StatusCheckCondition, Sense: sense}
	m := newMsg(iscsi.OpSCSIResponse, statAdvance)
	m.task = t
	c.send(m)
}

// execute runs a task whose data-out is complete on its own goroutine.
func (c *conn) execute(t *task) {
	t.executing = true
	t.cmd.DataOut = t.outBuf
	if t.cmd.ExpectedDataIn > 0 {
		t.inBufP = getBuf(t.cmd.ExpectedDataIn)
		t.cmd.Buf = (*t.inBufP)[:t.cmd.ExpectedDataIn]
	}
	c.cmdWG.Add(1)
	go func() {
		defer c.cmdWG.Done()
		scsi.Dispatcher{}.Execute(c.ctx, t.luns, &t.cmd, &t.resp)
		m := newMsg(iscsi.OpSCSIResponse, statAdvance)
		m.task = t
		c.send(m)
	}()
}
