package target

import "github.com/rampart-storage/rampart/internal/iscsi"

func (c *conn) nopOut(req *iscsi.PDU) {
	if req.ITT() == iscsi.ReservedTag {
		// An answer to our ping, or only an ExpStatSN update: no reply, no CmdSN.
		if req.U32(20) == pingTTT {
			c.pingPending.Store(0)
		}
		return
	}
	c.ordered(req, c.nopOutDelivered)
}

// nopOutDelivered answers a NOP-Out with an ITT, echoing its data.
func (c *conn) nopOutDelivered(req *iscsi.PDU) {
	m := newMsg(iscsi.OpNOPIn, statAdvance)
	m.pdu.BHS[1] = iscsi.FlagFinal
	m.pdu.SetLUN(req.LUN())
	m.pdu.SetU32(16, req.ITT())
	m.pdu.SetU32(20, iscsi.ReservedTag)
	if n := min(len(req.Data), int(c.sess.params.MaxRecvDataSegmentLength)); n > 0 {
		m.pdu.Data = append([]byte(nil), req.Data[:n]...)
	}
	c.send(m)
}

// Task management functions and responses (RFC 7143 section 11.5, 11.6).
const (
	tmfAbortTask       = 1
	tmfAbortTaskSet    = 2
	tmfClearACA        = 3
	tmfClearTaskSet    = 4
	tmfLUReset         = 5
	tmfTargetWarmReset = 6
	tmfTargetColdReset = 7
	tmfTaskReassign    = 8

	tmfComplete        = 0
	tmfNoTask          = 1
	tmfNoLUN           = 2
	tmfReassignNotSupp = 4
	tmfNotSupported    = 5
	tmfRejected        = 255
)

func (c *conn) taskMgmt(req *iscsi.PDU) { c.ordered(req, c.taskMgmtDelivered) }

func (c *conn) taskMgmtDelivered(req *iscsi.PDU) {
	fn := req.Flags() & 0x7f
	lun := DecodeLUN(req.LUN())
	luns := c.sess.luns.Load()
	nexus := c.sess.nexus.Load()
	var wait []*task
	var after func()
	code := byte(tmfComplete)
	switch fn {
	case tmfAbortTask:
		rtt := req.U32(20)
		c.mu.Lock()
		t := c.tasks[rtt]
		c.mu.Unlock()
		switch {
		case t != nil && t.lunRaw == req.LUN():
			wait = c.abort(func(x *task) bool { return x == t })
		case t != nil:
			code = tmfNoTask
		default:
			// A task never received whose RefCmdSN is in the window counts as received
			// and aborted; otherwise it does not exist (RFC 7143 11.5.1).
			ref := req.U32(32)
			exp, _ := c.cmdSNs()
			if int32(ref-exp) >= 0 && int32(req.U32(24)-ref) > 0 {
				code = tmfComplete
			} else {
				code = tmfNoTask
			}
		}
	case tmfAbortTaskSet, tmfClearTaskSet:
		lu := luns.Lookup(lun)
		if lu == nil {
			code = tmfNoLUN
			break
		}
		wait = c.abort(func(t *task) bool { return t.lu == lu })
		if fn == tmfClearTaskSet {
			for _, ss := range c.srv.targetSessions(c.sess.targetIQN) {
				if ss.conn != c && ss.conn != nil {
					wait = append(wait, ss.conn.abort(func(t *task) bool { return t.lu == lu })...)
				}
			}
		}
		lu.AbortTaskSet(nexus)
	case tmfLUReset:
		lu := luns.Lookup(lun)
		if lu == nil {
			code = tmfNoLUN
			break
		}
		for _, ss := range c.srv.targetSessions(c.sess.targetIQN) {
			if ss.conn != nil {
				wait = append(wait, ss.conn.abort(func(t *task) bool { return t.lu == lu })...)
			}
		}
		lu.Reset(nexus)
	case tmfTargetWarmReset, tmfTargetColdReset:
		sessions := c.srv.targetSessions(c.sess.targetIQN)
		for _, ss := range sessions {
			if ss.conn != nil {
				wait = append(wait, ss.conn.abort(func(*task) bool { return true })...)
			}
		}
		if ts := c.sess.ts.Load(); ts != nil {
			for _, u := range ts.luns {
				u.lu.Reset(nexus)
			}
		}
		if fn == tmfTargetColdReset {
			after = func() {
				for _, ss := range sessions {
					go ss.close()
				}
			}
		}
	case tmfTaskReassign:
		code = tmfReassignNotSupp
	case tmfClearACA:
		code = tmfNotSupported
	default:
		code = tmfRejected
	}
	m := newMsg(iscsi.OpTaskMgmtResp, statAdvance)
	m.pdu.BHS[1] = iscsi.FlagFinal
	m.pdu.BHS[2] = code
	m.pdu.SetU32(16, req.ITT())
	m.after = after
	if len(wait) == 0 {
		c.send(m)
		return
	}
	c.bgWG.Add(1)
	go func() {
		defer c.bgWG.Done()
		for _, t := range wait {
			<-t.done
		}
		c.send(m)
	}()
}

// abort marks the tasks matching pred aborted: their responses are never sent. Tasks
// still waiting for data-out are dropped at once. It returns the tasks to wait for.
func (c *conn) abort(pred func(*task) bool) []*task {
	c.mu.Lock()
	var out, drop []*task
	for _, t := range c.tasks {
		if !pred(t) {
			continue
		}
		t.aborted.Store(true)
		out = append(out, t)
		if !t.executing {
			drop = append(drop, t)
		}
	}
	c.mu.Unlock()
	for _, t := range drop {
		c.finishTask(t)
	}
	return out
}

// Logout reasons and responses.
const (
	logoutCloseSession   = 0
	logoutCloseConn      = 1
	logoutRemoveRecovery = 2
)

func (c *conn) logout(req *iscsi.PDU) { c.ordered(req, c.logoutDelivered) }

func (c *conn) logoutDelivered(req *iscsi.PDU) {
	reason := req.Flags() & 0x7f
	m := newMsg(iscsi.OpLogoutResp, statAdvance)
	m.pdu.BHS[1] = iscsi.FlagFinal
	m.pdu.SetU32(16, req.ITT())
	if reason == logoutRemoveRecovery {
		m.pdu.BHS[2] = 2 // connection recovery is not supported
		c.send(m)
		return
	}
	m.closeAfter = true
	c.mu.Lock()
	c.loggingOut = true
	c.mu.Unlock()
	// Tasks still waiting for data-out can never complete: drop them.
	c.abort(func(t *task) bool { return !t.executing })
	c.bgWG.Add(1)
	go func() {
		defer c.bgWG.Done()
		c.cmdWG.Wait()
		c.send(m)
	}()
}

// text answers a Text request: SendTargets, with continuation both ways.
func (c *conn) text(req *iscsi.PDU) { c.ordered(req, c.textDelivered) }

func (c *conn) textDelivered(req *iscsi.PDU) {
	ttt := req.U32(20)
	mrdsl := int(c.sess.params.MaxRecvDataSegmentLength)
	if ttt != iscsi.ReservedTag && ttt == c.textTTT && len(c.textOut) > 0 {
		c.sendText(req, mrdsl)
		return
	}
	c.textOut = nil
	c.textIn = append(c.textIn, req.Data...)
	if len(c.textIn) > iscsi.MaxTextLen {
		c.textIn = nil
		c.reject(req, rejectProtocol)
		return
	}
	if req.Flags()&iscsi.FlagContinue != 0 {
		c.nextTextTTT()
		m := newMsg(iscsi.OpTextResp, statAdvance)
		m.pdu.SetU32(16, req.ITT())
		m.pdu.SetU32(20, c.textTTT)
		c.send(m)
		return
	}
	kvs, err := iscsi.ParseText(c.textIn)
	c.textIn = nil
	if err != nil {
		c.reject(req, rejectProtocol)
		return
	}
	var out []iscsi.KV
	for _, kv := range kvs {
		switch {
		case kv.Key == "SendTargets":
			out = append(out, c.srv.sendTargets(c, kv.Value)...)
		case declarative[kv.Key]:
		default:
			out = append(out, iscsi.KV{Key: kv.Key, Value: iscsi.NotUnderstood})
		}
	}
	c.textOut = iscsi.AppendText(nil, out)
	c.sendText(req, mrdsl)
}

var declarative = map[string]bool{"InitiatorAlias": true, "TargetAlias": true}

func (c *conn) nextTextTTT() {
	c.nextTT++
	if c.nextTT == iscsi.ReservedTag || c.nextTT == pingTTT {
		c.nextTT = 1
	}
	c.textTTT = c.nextTT
}

// sendText sends the next piece of c.textOut, with the C bit while more follows.
func (c *conn) sendText(req *iscsi.PDU, mrdsl int) {
	n := min(len(c.textOut), mrdsl)
	m := newMsg(iscsi.OpTextResp, statAdvance)
	m.pdu.SetU32(16, req.ITT())
	m.pdu.Data = c.textOut[:n:n]
	c.textOut = c.textOut[n:]
	if len(c.textOut) > 0 {
		c.nextTextTTT()
		m.pdu.BHS[1] = iscsi.FlagContinue
		m.pdu.SetU32(20, c.textTTT)
	} else {
		c.textOut = nil
		m.pdu.BHS[1] = iscsi.FlagFinal
		m.pdu.SetU32(20, iscsi.ReservedTag)
	}
	c.send(m)
}
