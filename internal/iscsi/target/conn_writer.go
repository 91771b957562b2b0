package target

import (
	"math/bits"
	"sync"

	"github.com/rampart-storage/rampart/internal/iscsi"
)

// statPolicy says what a response does with StatSN.
type statPolicy uint8

const (
	statNone    statPolicy = iota // no StatSN field (Data-In without status)
	statKeep                      // carries the next StatSN without using it (R2T, pings)
	statAdvance                   // carries status: takes a StatSN
)

// outMsg is one item for the writer: a ready PDU or a finished task.
type outMsg struct {
	pdu        iscsi.PDU
	stat       statPolicy
	task       *task
	closeAfter bool   // drop the connection once written (logout)
	after      func() // run once written
}

var msgPool = sync.Pool{New: func() any { return new(outMsg) }}

func newMsg(op iscsi.Opcode, stat statPolicy) *outMsg {
	m := msgPool.Get().(*outMsg)
	m.pdu.Reset()
	m.pdu.BHS[0] = byte(op)
	m.stat = stat
	return m
}

func (m *outMsg) free() {
	m.task, m.closeAfter, m.after = nil, false, nil
	m.pdu.Data = nil
	msgPool.Put(m)
}

// send queues m for the writer; after the writer has gone m is dropped.
func (c *conn) send(m *outMsg) {
	select {
	case c.out <- m:
	case <-c.writerDone:
		if m.task != nil {
			c.finishTask(m.task)
		}
		m.free()
	}
}

// writer writes every queued message in order, flushing when the queue is empty.
func (c *conn) writer() {
	defer close(c.writerDone)
	failed := false
	handle := func(m *outMsg) {
		if !failed {
			if err := c.writeMsg(m); err != nil {
				c.log.Debug("iscsi write failed", "err", err)
				failed = true
				c.shutdown()
			}
		} else if m.task != nil {
			c.finishTask(m.task)
		}
		if m.closeAfter && !failed {
			c.bw.Flush()
			c.shutdown()
			failed = true
		}
		if m.after != nil {
			m.after()
		}
		m.free()
	}
	for {
		select {
		case m := <-c.out:
			handle(m)
			if len(c.out) == 0 && !failed {
				if err := c.bw.Flush(); err != nil {
					failed = true
					c.shutdown()
				}
			}
		case <-c.quit:
			for {
				select {
				case m := <-c.out:
					handle(m)
				default:
					if !failed {
						c.bw.Flush()
					}
					return
				}
			}
		}
	}
}

// stamp fills StatSN, ExpCmdSN and MaxCmdSN of a target PDU.
func (c *conn) stamp(p *iscsi.PDU, stat statPolicy) {
	switch stat {
	case statKeep:
		p.SetU32(24, c.statSN)
	case statAdvance:
		p.SetU32(24, c.statSN)
		c.statSN++
	}
	exp, max := c.cmdSNs()
	p.SetU32(28, exp)
	p.SetU32(32, max)
}

func (c *conn) writeMsg(m *outMsg) error {
	if m.task != nil {
		return c.writeTask(m.task)
	}
	c.stamp(&m.pdu, m.stat)
	return iscsi.WritePDU(c.bw, &m.pdu, c.digests)
}

// finishTask removes a task that is answered or dropped and frees its window slot.
func (c *conn) finishTask(t *task) {
	c.mu.Lock()
	if c.tasks[t.itt] == t {
		delete(c.tasks, t.itt)
	}
	c.mu.Unlock()
	if t.counted {
		c.commandDone()
	}
	t.release()
}

// writeTask sends a finished command: Data-In PDUs, then status either in the last
// Data-In (no sense data) or in a SCSI Response.
func (c *conn) writeTask(t *task) error {
	defer c.finishTask(t)
	if t.counted {
		// The answer opens the command's slot: its MaxCmdSN already counts it free.
		t.counted = false
		c.commandDone()
	}
	if t.aborted.Load() {
		return nil
	}
	resp := &t.resp
	data := resp.DataIn
	if uint32(len(data)) > t.cmd.ExpectedDataIn {
		data = data[:t.cmd.ExpectedDataIn]
	}
	var resid byte
	if resp.Overflow {
		resid = iscsi.FlagOverflow
	} else if resp.Underflow {
		resid = iscsi.FlagUnderflw
	}
	collapse := len(resp.Sense) == 0 && len(data) > 0
	mrdsl := int(c.sess.params.MaxRecvDataSegmentLength)
	burst := int(c.sess.params.MaxBurstLength)
	p := &c.wpdu // header only: Data points into the task's buffer
	var dataSN uint32
	for off := 0; off < len(data); {
		n := min(mrdsl, len(data)-off, burst-off%burst)
		last := off+n == len(data)
		p.BHS = [iscsi.BHSLen]byte{}
		p.BHS[0] = byte(iscsi.OpDataIn)
		stat := statNone
		if last || (off+n)%burst == 0 {
			p.BHS[1] = iscsi.FlagFinal
		}
		if last && collapse {
			p.BHS[1] |= iscsi.FlagStatus | resid
			p.BHS[3] = resp.Status
			p.SetU32(44, resp.Residual)
			stat = statAdvance
		}
		p.SetLUN(t.lunRaw)
		p.SetU32(16, t.itt)
		p.SetU32(20, iscsi.ReservedTag)
		c.stamp(p, stat)
		p.SetU32(36, dataSN)
		p.SetU32(40, uint32(off))
		p.Data = data[off : off+n]
		if err := iscsi.WritePDU(c.bw, p, c.digests); err != nil {
			return err
		}
		dataSN++
		off += n
	}
	if collapse {
		return nil
	}
	p.BHS = [iscsi.BHSLen]byte{}
	p.BHS[0] = byte(iscsi.OpSCSIResponse)
	p.BHS[1] = iscsi.FlagFinal | resid
	p.BHS[3] = resp.Status
	p.SetU32(16, t.itt)
	c.stamp(p, statAdvance)
	p.SetU32(36, dataSN)
	p.SetU32(44, resp.Residual)
	p.Data = nil
	if len(resp.Sense) > 0 {
		sense := t.senseBuf[:0]
		sense = append(sense, byte(len(resp.Sense)>>8), byte(len(resp.Sense)))
		sense = append(sense, resp.Sense...)
		t.senseBuf = sense
		p.Data = sense
	}
	err := iscsi.WritePDU(c.bw, p, c.digests)
	p.Data = nil
	return err
}

// Data buffers come from pools by power-of-two size class, so commands allocate no
// data buffers in the steady state.
const (
	minBufShift = 12 // 4 KiB
	maxBufShift = 25 // 32 MiB, the largest transfer accepted
	// MaxTransferLength is the largest expected data transfer length of a command.
	MaxTransferLength = 1 << maxBufShift
)

var bufPools [maxBufShift + 1]sync.Pool

// getBuf returns a pooled buffer of at least n bytes; nil for 0.
func getBuf(n uint32) *[]byte {
	if n == 0 {
		return nil
	}
	shift := max(bits.Len32(n-1), minBufShift)
	if b, ok := bufPools[shift].Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 1<<shift)
	return &b
}

// putBuf returns a buffer of getBuf to its pool.
func putBuf(b *[]byte) {
	if b == nil {
		return
	}
	shift := bits.Len(uint(cap(*b))) - 1
	bufPools[shift].Put(b)
}
