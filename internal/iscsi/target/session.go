package target

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi"
	"github.com/rampart-storage/rampart/internal/scsi"
)

// session is an iSCSI session: one connection (MaxConnections=1), its I_T nexus and
// the LUNs it sees.
type session struct {
	srv        *Server
	discovery  bool
	targetIQN  string
	initiator  string
	isid       [6]byte
	tsih       uint16
	portal     string // configured portal the connection came through
	params     iscsi.Params
	loginCmdSN uint32 // CmdSN of the login, the first ExpCmdSN

	ts    atomic.Pointer[targetState]
	luns  atomic.Pointer[scsi.StaticLUNs]
	nexus atomic.Pointer[scsi.Nexus]

	conn      *conn
	closeOnce sync.Once
	done      chan struct{} // closed when the connection has ended
}

// initiatorPort is the SCSI initiator port name "IQN,i,0xISID".
func (ss *session) initiatorPort() string {
	return fmt.Sprintf("%s,i,0x%012x", ss.initiator, ss.isid)
}

// update installs a new configuration of the session's target.
func (ss *session) update(ts *targetState) {
	ss.ts.Store(ts)
	ss.luns.Store(ts.lunsFor(ss.initiator))
	port := ts.ports[ss.portal]
	if old := ss.nexus.Load(); old != nil && old.Port == port && groupsEqual(old.Groups, ts.groups) {
		return // logical units key their per-nexus state by pointer: keep it stable
	}
	ss.nexus.Store(&scsi.Nexus{
		InitiatorPort: ss.initiatorPort(),
		InitiatorName: ss.initiator,
		Port:          port,
		Groups:        ts.groups,
	})
}

func groupsEqual(a, b []scsi.PortGroup) bool {
	return slices.EqualFunc(a, b, func(x, y scsi.PortGroup) bool {
		return x.ID == y.ID && x.State == y.State && x.Altered == y.Altered && slices.Equal(x.PortIDs, y.PortIDs)
	})
}

// close drops the session's connection and waits for it to end.
func (ss *session) close() {
	ss.closeOnce.Do(func() {
		if ss.conn != nil {
			ss.conn.shutdown()
		}
	})
	<-ss.done
}

// Async events (RFC 7143 section 11.9.1).
const asyncDropAllConnections = 3

// closeWithNotice tells the initiator with an Async Message that the target drops all
// connections of the session, then closes it.
func (ss *session) closeWithNotice() {
	c := ss.conn
	if c == nil || !c.running.Load() {
		ss.close()
		return
	}
	m := newMsg(iscsi.OpAsync, statAdvance)
	m.pdu.BHS[1] = iscsi.FlagFinal
	m.pdu.SetU32(16, iscsi.ReservedTag)
	m.pdu.SetU32(20, iscsi.ReservedTag)
	m.pdu.BHS[36] = asyncDropAllConnections
	m.pdu.SetU16(40, uint16(ss.params.DefaultTime2Wait))
	m.pdu.SetU16(42, uint16(ss.params.DefaultTime2Retain))
	m.closeAfter = true
	c.send(m)
	select {
	case <-ss.done:
	case <-time.After(time.Second):
	}
	ss.close()
}

// register adds a session that finished login, first closing the session it
// reinstates (same initiator, ISID and target; ERL 0 session reinstatement).
func (s *Server) register(ss *session) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return failLogin(statusTargetError, "server closing")
	}
	if !ss.discovery {
		// The configuration may have changed since the login began.
		ts := s.targets[ss.targetIQN]
		if ts == nil || !ts.admits(ss.initiator) {
			s.mu.Unlock()
			return failLogin(statusNotFound, "target %s gone or initiator %s no longer admitted", ss.targetIQN, ss.initiator)
		}
		if _, ok := ts.ports[ss.portal]; !ok {
			s.mu.Unlock()
			return failLogin(statusNotFound, "target %s no longer served on portal %s", ss.targetIQN, ss.portal)
		}
		ss.update(ts)
	}
	s.nextTSIH++
	if s.nextTSIH == 0 {
		s.nextTSIH = 1
	}
	ss.tsih = s.nextTSIH
	var old []*session
	for o := range s.sessions {
		if !o.discovery && !ss.discovery && o.initiator == ss.initiator && o.isid == ss.isid && o.targetIQN == ss.targetIQN {
			old = append(old, o)
			delete(s.sessions, o)
		}
	}
	s.sessions[ss] = struct{}{}
	s.mu.Unlock()
	for _, o := range old {
		s.log.Info("reinstating session", "initiator", o.initiator, "isid", fmt.Sprintf("%012x", o.isid), "tsih", o.tsih)
		o.close()
	}
	return nil
}

// unregister removes a session whose connection ended and tells its logical units.
func (s *Server) unregister(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
	if ss.discovery {
		return
	}
	if lt, n := ss.luns.Load(), ss.nexus.Load(); lt != nil && n != nil {
		for _, lu := range *lt {
			lu.NexusLost(n)
		}
	}
}

// sessionByTSIH reports whether a session with tsih exists.
func (s *Server) sessionByTSIH(tsih uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.sessions {
		if ss.tsih == tsih {
			return true
		}
	}
	return false
}

// targetSessions returns the sessions of target iqn.
func (s *Server) targetSessions(iqn string) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*session
	for ss := range s.sessions {
		if !ss.discovery && ss.targetIQN == iqn {
			out = append(out, ss)
		}
	}
	return out
}
