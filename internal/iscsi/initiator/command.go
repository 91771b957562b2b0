package initiator

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi"
)

// Execute sends one SCSI command to lun and waits for its status. dataOut is the data
// to write (nil for none); dataIn is the buffer for data to read (nil for none). Many
// Executes may run at once; they are pipelined within the target's CmdSN window.
//
// When ctx ends first, Execute returns ctx's error; the command stays known to the
// session until the target answers, and its data-in is then discarded.
func (s *Session) Execute(ctx context.Context, lun uint64, cdb, dataOut, dataIn []byte) (Result, error) {
	if len(cdb) > 16 {
		return Result{}, fmt.Errorf("CDB of %d bytes: extended CDBs are not supported", len(cdb))
	}
	if dataIn != nil && dataOut != nil {
		return Result{}, errors.New("bidirectional commands are not supported")
	}
	t := &task{lun: lun, dataIn: dataIn, dataOut: dataOut, done: make(chan struct{})}
	if pipe := pipeFrom(ctx); pipe != nil && dataIn != nil && s.rc != nil {
		if err := pipe.Reset(); err != nil { // what an earlier try left
			return Result{}, err
		}
		t.pipe = pipe
	}
	var p iscsi.PDU
	p.BHS[0] = byte(iscsi.OpSCSICommand)
	p.BHS[1] = iscsi.FlagFinal | 1 // task attribute SIMPLE
	if dataIn != nil {
		p.BHS[1] |= iscsi.FlagRead
	}
	if dataOut != nil {
		p.BHS[1] |= iscsi.FlagWrite
	}
	p.SetLUN(EncodeLUN(lun))
	p.SetU32(20, uint32(len(dataIn)+len(dataOut)))
	copy(p.BHS[32:48], cdb)
	// Unsolicited data (up to FirstBurstLength): immediate data in the command PDU when
	// ImmediateData=Yes, then Data-Out PDUs when InitialR2T=No; the rest waits for R2Ts.
	pr := s.params
	unsolicited, imm := 0, 0
	if len(dataOut) > 0 && (pr.ImmediateData || !pr.InitialR2T) {
		unsolicited = min(len(dataOut), int(pr.FirstBurstLength))
		if pr.ImmediateData {
			imm = min(unsolicited, int(pr.MaxRecvDataSegmentLength))
			p.Data = dataOut[:imm]
		}
	}
	// Commands must leave in CmdSN order (RFC 7143 4.2.2.1): the CmdSN is taken and the
	// PDUs written under the write lock. Waiting for the window happens without it, so
	// Data-Out answering R2Ts keeps flowing meanwhile.
	for {
		s.wmu.Lock()
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			s.wmu.Unlock()
			return Result{}, err
		}
		if !serialLess(s.maxCmdSN, s.cmdSN) {
			break // s.wmu and s.mu held
		}
		s.mu.Unlock()
		s.wmu.Unlock()
		s.mu.Lock()
		for s.err == nil && serialLess(s.maxCmdSN, s.cmdSN) {
			s.window.Wait()
		}
		s.mu.Unlock()
	}
	t.itt = s.nextITT
	s.nextITT++
	if s.nextITT == iscsi.ReservedTag {
		s.nextITT = 1
	}
	p.SetU32(16, t.itt)
	p.SetU32(24, s.cmdSN)
	p.SetU32(28, s.expSN)
	s.cmdSN++
	s.tasks[t.itt] = t
	s.mu.Unlock()
	err := iscsi.WritePDU(s.bw, &p, s.dig)
	if err == nil && !pr.InitialR2T && imm < unsolicited {
		for _, q := range s.dataOutPDUs(t, iscsi.ReservedTag, imm, unsolicited-imm) {
			if err = iscsi.WritePDU(s.bw, q, s.dig); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = s.bw.Flush()
	}
	s.wmu.Unlock()
	if err != nil {
		s.fail(err)
	}
	select {
	case <-t.done:
		if t.err != nil {
			return Result{}, t.err
		}
		if t.pipeFell {
			if err := t.pipe.Reset(); err != nil {
				return Result{}, err
			}
			return Result{}, errPipeFallback
		}
		t.res.Piped = t.pipe != nil && t.res.DataIn > 0
		return t.res, nil
	case <-ctx.Done():
		s.mu.Lock()
		for t.receiving { // data is being read into the caller's buffer right now
			s.received.Wait()
		}
		if _, live := s.tasks[t.itt]; live {
			t.dataIn = nil // a late Data-In must not touch the caller's buffer
			t.pipe = nil   // nor its pipe
		}
		s.mu.Unlock()
		return Result{}, ctx.Err()
	}
}

// Unsolicited is how many bytes of write data a command carries without waiting for
// an R2T: immediate data and unsolicited Data-Out, as Execute sends them. A write up to
// this size takes one round trip; LUN splits larger ones into commands of this size
// sent at once (see LUN.write).
func (s *Session) Unsolicited() int {
	pr := s.params
	if !pr.ImmediateData && pr.InitialR2T {
		return 0
	}
	if pr.InitialR2T { // immediate data only
		return int(min(pr.FirstBurstLength, pr.MaxRecvDataSegmentLength))
	}
	return int(pr.FirstBurstLength)
}

// dataOutPDUs splits dataOut[off:off+n] into Data-Out PDUs of at most the target's
// MaxRecvDataSegmentLength, for one R2T (ttt) or the unsolicited burst (ReservedTag).
func (s *Session) dataOutPDUs(t *task, ttt uint32, off, n int) []*iscsi.PDU {
	max := int(s.params.MaxRecvDataSegmentLength)
	var out []*iscsi.PDU
	for sn := uint32(0); n > 0; sn++ {
		k := min(n, max)
		p := &iscsi.PDU{}
		p.BHS[0] = byte(iscsi.OpDataOut)
		if k == n {
			p.BHS[1] = iscsi.FlagFinal
		}
		p.SetLUN(EncodeLUN(t.lun))
		p.SetU32(16, t.itt)
		p.SetU32(20, ttt)
		s.mu.Lock()
		p.SetU32(28, s.expSN)
		s.mu.Unlock()
		p.SetU32(36, sn)
		p.SetU32(40, uint32(off))
		p.Data = t.dataOut[off : off+k]
		out = append(out, p)
		off += k
		n -= k
	}
	return out
}

// reader receives every PDU of the connection and completes tasks. The data of a
// Data-In PDU goes straight from the connection's buffer into the task's buffer (see
// readDataIn); every other PDU is read whole.
func (s *Session) reader(br *bufio.Reader) {
	defer s.wg.Done()
	var p iscsi.PDU
	maxData := int(s.params.OurMaxRecvDataSegmentLength)
	for {
		direct, err := false, error(nil)
		if directDataIn {
			direct, err = s.readDataIn(br, maxData)
		}
		if err != nil {
			s.fail(fmt.Errorf("receive: %w", err))
			return
		}
		if direct {
			continue
		}
		s.cr.exact = false
		if err := iscsi.ReadPDU(br, &p, s.dig, maxData); err != nil {
			s.fail(fmt.Errorf("receive: %w", err))
			return
		}
		s.lastRecv.Store(time.Now().UnixNano())
		if err := s.handle(&p); err != nil {
			s.fail(err)
			return
		}
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// directDataIn turns readDataIn on; benchmarks turn it off to measure what it saves.
var directDataIn = true

// readDataIn receives the next PDU when it is a Data-In whose data fits its task's
// buffer: the data segment is read into that buffer directly, saving a copy of every
// byte read. It reports false, having consumed nothing, for any other PDU.
func (s *Session) readDataIn(br *bufio.Reader, maxData int) (bool, error) {
	hl := iscsi.BHSLen
	if s.dig.Header {
		hl += 4
	}
	b, err := br.Peek(hl)
	if err != nil {
		if len(b) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return false, err
	}
	var hdr iscsi.PDU
	copy(hdr.BHS[:], b)
	n := hdr.DataSegmentLength()
	if hdr.Opcode() != iscsi.OpDataIn || hdr.TotalAHSLength() != 0 || n == 0 || n > maxData ||
		s.dig.Header && binary.LittleEndian.Uint32(b[iscsi.BHSLen:]) != iscsi.CRC32C(hdr.BHS[:]) {
		return false, nil
	}
	off := int(hdr.U32(40))
	s.mu.Lock()
	t := s.tasks[hdr.ITT()]
	if t == nil || t.dataIn == nil || off < 0 || off+n > len(t.dataIn) {
		s.mu.Unlock()
		return false, nil
	}
	t.receiving = true
	dst := t.dataIn[off : off+n]
	pipe := t.pipe
	if pipe != nil && (off != t.got || t.pipeFell) { // a pipe takes the data in order only
		t.pipeFell, pipe = true, nil
	}
	s.mu.Unlock()
	br.Discard(hl)
	// After a segment spliced into a pipe, headers are read exactly, so that the
	// next segment stays in the socket for the next splice.
	s.cr.exact = pipe != nil
	fell := false
	if pipe != nil {
		fell, err = s.spliceIn(br, pipe, dst)
	} else {
		_, err = io.ReadFull(br, dst)
	}
	var tail [8]byte // padding, then the data digest
	pad := (4 - n%4) % 4
	want := pad
	if s.dig.Data {
		want += 4
	}
	if err == nil {
		_, err = io.ReadFull(br, tail[:want])
	}
	if err == nil && s.dig.Data {
		crc := crc32.Update(iscsi.CRC32C(dst), castagnoli, tail[:pad])
		if binary.LittleEndian.Uint32(tail[pad:]) != crc {
			err = fmt.Errorf("%s PDU: %w", hdr.Opcode(), iscsi.ErrDataDigest)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.receiving = false
	if fell {
		t.pipeFell = true
	}
	s.received.Broadcast()
	if err != nil {
		return true, err
	}
	s.lastRecv.Store(time.Now().UnixNano())
	s.dataInDone(&hdr, t, off, n)
	return true, nil
}

// dataInDone accounts a Data-In PDU whose data is in place; s.mu is held.
func (s *Session) dataInDone(p *iscsi.PDU, t *task, off, n int) {
	status := p.Flags()&iscsi.FlagStatus != 0
	s.updateSN(p, status)
	t.got = max(t.got, off+n)
	if status {
		t.res = Result{Status: p.BHS[3], DataIn: t.got}
		s.residual(t, p)
		s.complete(t)
	}
}

// updateSN takes ExpCmdSN and MaxCmdSN (and StatSN when the PDU carries status).
func (s *Session) updateSN(p *iscsi.PDU, hasStatus bool) {
	exp, max := p.U32(28), p.U32(32)
	if hasStatus {
		if sn := p.U32(24); !serialLess(sn+1, s.expSN) {
			s.expSN = sn + 1
		}
	}
	// MaxCmdSN = ExpCmdSN - 1 means the window is closed; ignore values that go back.
	if !serialLess(max, exp-1) {
		if serialLess(s.expCmdSN, exp) {
			s.expCmdSN = exp
		}
		if serialLess(s.maxCmdSN, max) {
			s.maxCmdSN = max
			s.window.Broadcast()
		}
	}
}

func (s *Session) handle(p *iscsi.PDU) error {
	switch op := p.Opcode(); op {
	case iscsi.OpDataIn:
		s.mu.Lock()
		t := s.tasks[p.ITT()]
		if t == nil {
			s.updateSN(p, p.Flags()&iscsi.FlagStatus != 0)
			s.mu.Unlock()
			return nil // an aborted command's data
		}
		off := int(p.U32(40))
		if t.dataIn != nil {
			if off+len(p.Data) > len(t.dataIn) {
				s.mu.Unlock()
				return fmt.Errorf("Data-In for task %#x at %d+%d beyond its %d-byte buffer", t.itt, off, len(p.Data), len(t.dataIn))
			}
			copy(t.dataIn[off:], p.Data)
			if t.pipe != nil && len(p.Data) > 0 {
				t.pipeFell = true // this part is in the buffer, not the pipe
			}
		}
		s.dataInDone(p, t, off, len(p.Data))
		s.mu.Unlock()
	case iscsi.OpSCSIResponse:
		s.mu.Lock()
		s.updateSN(p, true)
		t := s.tasks[p.ITT()]
		if t == nil {
			s.mu.Unlock()
			return nil
		}
		if p.BHS[2] != 0 {
			t.err = fmt.Errorf("task %#x: target failure (iSCSI response %#x)", t.itt, p.BHS[2])
		}
		t.res = Result{Status: p.BHS[3], DataIn: t.got}
		if len(p.Data) >= 2 {
			n := int(p.Data[0])<<8 | int(p.Data[1])
			if n > 0 && 2+n <= len(p.Data) {
				t.res.Sense = append([]byte(nil), p.Data[2:2+n]...)
			}
		}
		s.residual(t, p)
		s.complete(t)
		s.mu.Unlock()
	case iscsi.OpR2T:
		s.mu.Lock()
		s.updateSN(p, false)
		t := s.tasks[p.ITT()]
		s.mu.Unlock()
		if t == nil {
			return nil
		}
		off, n := int(p.U32(40)), int(p.U32(44))
		if off+n > len(t.dataOut) {
			return fmt.Errorf("R2T for task %#x asks %d+%d of %d bytes", t.itt, off, n, len(t.dataOut))
		}
		pdus := s.dataOutPDUs(t, p.U32(20), off, n)
		go func() { // never block the reader on a write
			if err := s.send(pdus...); err != nil {
				s.fail(err)
			}
		}()
	case iscsi.OpNOPIn:
		s.mu.Lock()
		s.updateSN(p, p.ITT() != iscsi.ReservedTag)
		if p.ITT() == s.pingITT {
			s.pingITT = 0
		}
		s.mu.Unlock()
		if ttt := p.U32(20); ttt != iscsi.ReservedTag { // the target pings us: answer
			var q iscsi.PDU
			q.BHS[0] = byte(iscsi.OpNOPOut) | iscsi.ImmediateBit
			q.BHS[1] = iscsi.FlagFinal
			q.SetLUN(p.LUN())
			q.SetU32(16, iscsi.ReservedTag)
			q.SetU32(20, ttt)
			s.mu.Lock()
			q.SetU32(24, s.cmdSN)
			q.SetU32(28, s.expSN)
			s.mu.Unlock()
			q.Data = append([]byte(nil), p.Data...)
			go s.send(&q)
		}
	case iscsi.OpAsync:
		s.mu.Lock()
		s.updateSN(p, true)
		s.mu.Unlock()
		switch ev := p.BHS[36]; ev {
		case 1, 2, 3: // logout requested, connection or session dropped
			return fmt.Errorf("target asked to end the session (async event %d)", ev)
		}
	case iscsi.OpReject:
		s.mu.Lock()
		s.updateSN(p, true)
		if len(p.Data) >= iscsi.BHSLen {
			itt := uint32(p.Data[16])<<24 | uint32(p.Data[17])<<16 | uint32(p.Data[18])<<8 | uint32(p.Data[19])
			if t := s.tasks[itt]; t != nil {
				t.err = fmt.Errorf("task %#x rejected by the target (reason %#x)", itt, p.BHS[2])
				s.complete(t)
			}
		}
		s.mu.Unlock()
	case iscsi.OpLogoutResp:
		return errors.New("logged out")
	case iscsi.OpTextResp:
		s.mu.Lock()
		s.updateSN(p, true)
		w := s.textWait
		s.textWait = nil
		s.mu.Unlock()
		if w != nil {
			r := &iscsi.PDU{BHS: p.BHS, Data: append([]byte(nil), p.Data...)}
			w <- r
		}
	case iscsi.OpTaskMgmtResp:
		s.mu.Lock()
		s.updateSN(p, true)
		s.mu.Unlock()
	default:
		return fmt.Errorf("unexpected %s PDU from the target", op)
	}
	return nil
}

func (s *Session) residual(t *task, p *iscsi.PDU) {
	f := p.Flags()
	t.res.Underflow = f&iscsi.FlagUnderflw != 0
	t.res.Overflow = f&iscsi.FlagOverflow != 0
	if t.res.Underflow || t.res.Overflow {
		t.res.Residual = p.U32(44)
	}
}

// complete finishes t; s.mu is held.
func (s *Session) complete(t *task) {
	delete(s.tasks, t.itt)
	close(t.done)
}

// keepalive pings the target when the connection is idle and fails the session when a
// ping goes unanswered for NopTimeout while nothing else arrives either. It never
// waits for the connection's writer: when a link dies under writes carrying
// unsolicited data, the socket's send buffer fills and the writer blocks holding
// wmu; the ping then waits in its own goroutine, the timeout runs from when it was
// queued (as open-iscsi's transport timer, which does not wait for the ping to leave),
// and failing the session closes the connection, which unblocks the writer.
func (s *Session) keepalive() {
	defer s.wg.Done()
	tick := time.NewTicker(min(s.o.NopInterval, s.o.NopTimeout) / 4)
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-tick.C:
			s.mu.Lock()
			pending, sent := s.pingITT, s.pingSent
			s.mu.Unlock()
			idle := now.Sub(time.Unix(0, s.lastRecv.Load()))
			if pending != 0 && now.Sub(sent) > s.o.NopTimeout && idle > s.o.NopTimeout {
				s.fail(fmt.Errorf("no answer to NOP-Out in %v", s.o.NopTimeout))
				return
			}
			if pending == 0 && idle > s.o.NopInterval {
				s.ping(now)
			}
		}
	}
}

func (s *Session) ping(now time.Time) {
	var p iscsi.PDU
	p.BHS[0] = byte(iscsi.OpNOPOut) | iscsi.ImmediateBit
	p.BHS[1] = iscsi.FlagFinal
	s.mu.Lock()
	s.pingITT = s.nextITT
	s.nextITT++
	s.pingSent = now
	p.SetU32(16, s.pingITT)
	p.SetU32(20, iscsi.ReservedTag)
	p.SetU32(24, s.cmdSN)
	p.SetU32(28, s.expSN)
	s.mu.Unlock()
	s.wg.Add(1) // keepalive holds the group, so the count is not zero here
	go func() {
		defer s.wg.Done()
		if err := s.send(&p); err != nil {
			s.fail(fmt.Errorf("send NOP-Out: %w", err))
		}
	}()
}
