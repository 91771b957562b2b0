package initiator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/iscsi"
)

// Session is a logged-in iSCSI session over one connection.
type Session struct {
	o      Options
	conn   net.Conn
	rc     syscall.RawConn // conn's descriptor for splicing Data-In into pipes; nil if none
	cr     *capReader      // under the reader's bufio.Reader
	params iscsi.Params
	dig    iscsi.Digests
	tsih   uint16
	isid   [6]byte

	wmu sync.Mutex // serialises writes
	bw  *iscsi.SockWriter

	mu       sync.Mutex
	window   *sync.Cond
	received *sync.Cond // a task's direct Data-In read ended (task.receiving)
	cmdSN    uint32     // next CmdSN to use
	expCmdSN uint32
	maxCmdSN uint32
	expSN    uint32 // ExpStatSN
	nextITT  uint32
	tasks    map[uint32]*task
	err      error // set once the session has failed
	pingITT  uint32
	pingSent time.Time
	textWait chan *iscsi.PDU // the Text exchange in progress, if any

	lastRecv atomic.Int64 // unix nanos of the last PDU received
	done     chan struct{}
	wg       sync.WaitGroup
}

// Result is the outcome of one SCSI command.
type Result struct {
	Status byte
	Sense  []byte
	// DataIn is how many bytes of the data-in buffer the target filled.
	DataIn int
	// Piped: the data-in went into the context's pipe (WithPipe), not the buffer.
	Piped     bool
	Residual  uint32
	Underflow bool
	Overflow  bool
}

type task struct {
	itt     uint32
	lun     uint64
	dataIn  []byte
	dataOut []byte
	res     Result
	err     error
	done    chan struct{}
	got     int
	// receiving: the reader is filling dataIn[...] without s.mu (readDataIn)
	receiving bool
	// pipe, when set, takes the data-in instead of dataIn (see pipe.go); pipeFell:
	// part of it went to dataIn instead, so the read must be done again.
	pipe     *blockdev.Pipe
	pipeFell bool
}

// Dial connects to o.Portal and logs in.
func Dial(ctx context.Context, o Options) (*Session, error) {
	return dial(ctx, o, newISID())
}

// dial logs in with a given ISID: a Client logs in again with the ISID of the session
// it replaces (RFC 7143 session reinstatement).
func dial(ctx context.Context, o Options, isid [6]byte) (*Session, error) {
	o.defaults()
	portal := withDefaultPort(o.Portal)
	ctx, cancel := context.WithTimeout(ctx, o.LoginTimeout)
	defer cancel()
	conn, err := o.DialContext(ctx, "tcp", portal)
	if err != nil {
		return nil, fmt.Errorf("connect to portal %s: %w", portal, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	cr := &capReader{r: conn, max: iscsi.BHSLen}
	l := &loginConn{o: &o, br: bufio.NewReaderSize(cr, 64<<10), bw: bufio.NewWriterSize(conn, 64<<10), isid: isid}
	if err := l.login(); err != nil {
		conn.Close()
		what := "target " + o.TargetName
		if o.TargetName == "" {
			what = "discovery"
		}
		return nil, fmt.Errorf("login to %s at %s: %w", what, portal, err)
	}
	conn.SetDeadline(time.Time{})
	s := &Session{
		o: o, conn: conn, cr: cr, params: l.params, tsih: l.tsih, isid: isid,
		dig: iscsi.Digests{Header: l.params.HeaderDigest, Data: l.params.DataDigest},
		bw:  iscsi.NewSockWriter(conn), cmdSN: l.expCmdSN, expCmdSN: l.expCmdSN, maxCmdSN: l.maxCmdSN, expSN: l.expSN,
		nextITT: 1, tasks: map[uint32]*task{}, done: make(chan struct{}),
	}
	if sc, ok := conn.(syscall.Conn); ok && !s.dig.Data {
		s.rc, _ = sc.SyscallConn()
	}
	s.window = sync.NewCond(&s.mu)
	s.received = sync.NewCond(&s.mu)
	s.lastRecv.Store(time.Now().UnixNano())
	s.wg.Add(2)
	go s.reader(l.br)
	go s.keepalive()
	return s, nil
}

func withDefaultPort(p string) string {
	if _, _, err := net.SplitHostPort(p); err == nil {
		return p
	}
	return net.JoinHostPort(trimBrackets(p), "3260")
}

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// Params are the negotiated parameters.
func (s *Session) Params() iscsi.Params { return s.params }

// Portal is the portal the session is connected to.
func (s *Session) Portal() string { return s.o.Portal }

// TargetName is the target the session is logged in to.
func (s *Session) TargetName() string { return s.o.TargetName }

// Err is nil while the session works, and why it failed afterwards.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Done is closed when the session fails or is closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// fail ends the session: every outstanding command fails with err. The connection is
// closed first, so that a Data-In being read into a caller's buffer (readDataIn) ends
// before the caller hears of the failure and reuses its buffer for a retry.
func (s *Session) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = fmt.Errorf("session to %s at %s: %w: %w", s.o.TargetName, s.o.Portal, ErrSessionFailed, err)
	s.mu.Unlock()
	s.conn.Close()
	s.mu.Lock()
	for itt, t := range s.tasks {
		for t.receiving {
			s.received.Wait()
		}
		if s.tasks[itt] != t {
			continue // completed by the read we waited for
		}
		t.err = s.err
		close(t.done)
		delete(s.tasks, itt)
	}
	s.window.Broadcast()
	s.mu.Unlock()
	close(s.done)
}

// Close logs out (briefly waiting for the target's answer) and closes the connection.
func (s *Session) Close() error {
	if s.Err() == nil {
		var p iscsi.PDU
		p.BHS[0] = byte(iscsi.OpLogout) | iscsi.ImmediateBit
		p.BHS[1] = iscsi.FlagFinal // reason 0: close the session
		s.mu.Lock()
		itt := s.nextITT
		s.nextITT++
		p.SetU32(16, itt)
		p.SetU32(24, s.cmdSN)
		p.SetU32(28, s.expSN)
		s.mu.Unlock()
		if s.send(&p) == nil {
			select {
			case <-s.done:
			case <-time.After(2 * time.Second):
			}
		}
	}
	s.fail(errors.New("closed"))
	s.wg.Wait()
	return nil
}

func (s *Session) send(ps ...*iscsi.PDU) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for _, p := range ps {
		if err := iscsi.WritePDU(s.bw, p, s.dig); err != nil {
			return err
		}
	}
	return s.bw.Flush()
}

// serialLess is RFC 1982 serial number comparison (a < b).
func serialLess(a, b uint32) bool { return a != b && int32(b-a) > 0 }

// EncodeLUN encodes a LUN number in SAM's single-level format (peripheral addressing
// below 256, flat space addressing above).
func EncodeLUN(lun uint64) uint64 {
	if lun < 256 {
		return lun << 48
	}
	return (0x4000 | lun&0x3fff) << 48
}
