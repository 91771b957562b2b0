package target

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi"
)

// conn is one TCP connection: login, then the full feature phase with one reader, a
// goroutine per command in flight and one writer.
type conn struct {
	srv    *Server
	nc     net.Conn
	br     *bufio.Reader
	bw     *iscsi.SockWriter
	portal string
	sess   *session
	log    *slog.Logger

	digests iscsi.Digests
	ctx     context.Context
	cancel  context.CancelFunc

	out        chan *outMsg
	quit       chan struct{} // closed when no more messages will be sent
	writerDone chan struct{}
	statSN     uint32    // owned by the writer after login
	wpdu       iscsi.PDU // the writer's Data-In and SCSI Response header

	win cmdWindow // CmdSN window and reorder queue

	mu         sync.Mutex
	tasks      map[uint32]*task
	loggingOut bool

	cmdWG  sync.WaitGroup // command executions
	bgWG   sync.WaitGroup // TMF and logout waiters
	nextTT uint32         // reader only

	lastRecv    atomic.Int64
	pingPending atomic.Int64 // unix nanos of the unanswered ping, 0 if none
	shutOnce    sync.Once
	running     atomic.Bool // the writer runs: messages may be sent

	textIn  []byte // reader only: Text request data being continued
	textOut []byte // reader only: Text response data still to send
	textTTT uint32
}

func (s *Server) serveConn(ctx context.Context, nc net.Conn, portal string) {
	c := &conn{
		srv:    s,
		nc:     nc,
		br:     bufio.NewReaderSize(nc, 64<<10),
		bw:     iscsi.NewSockWriter(nc),
		portal: portal,
		log:    s.log.With("remote", nc.RemoteAddr().String()),
		tasks:  map[uint32]*task{},
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	nc.SetDeadline(time.Now().Add(s.opts.LoginTimeout))
	ss, err := s.doLogin(c)
	if err != nil {
		c.log.Info("iscsi login failed", "err", err)
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	c.log = c.log.With("initiator", ss.initiator, "target", ss.targetIQN, "tsih", ss.tsih)
	c.log.Info("iscsi session in full feature phase", "params", ss.params.String())
	defer close(ss.done)
	defer s.unregister(ss)
	c.run(ctx)
}

// run is the full feature phase.
func (c *conn) run(ctx context.Context) {
	p := &c.sess.params
	c.digests = iscsi.Digests{Header: p.HeaderDigest, Data: p.DataDigest}
	c.win.init(c.sess.loginCmdSN, c.srv.opts.QueueDepth)
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.out = make(chan *outMsg, 256)
	c.quit = make(chan struct{})
	c.writerDone = make(chan struct{})
	c.lastRecv.Store(time.Now().UnixNano())
	go c.writer()
	c.running.Store(true)
	pingDone := make(chan struct{})
	go c.pinger(pingDone)

	err := c.reader()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.log.Info("iscsi connection ended", "err", err)
	}
	c.cancel()
	c.mu.Lock()
	c.loggingOut = true
	for _, t := range c.tasks {
		t.aborted.Store(true)
	}
	c.mu.Unlock()
	c.cmdWG.Wait()
	c.bgWG.Wait()
	close(pingDone)
	close(c.quit)
	<-c.writerDone
	c.nc.Close()
	c.mu.Lock()
	for itt, t := range c.tasks {
		delete(c.tasks, itt)
		t.release()
	}
	c.mu.Unlock()
}

// shutdown drops the connection; run then cleans up.
func (c *conn) shutdown() {
	c.shutOnce.Do(func() { c.nc.Close() })
}

func (c *conn) reader() error {
	var req iscsi.PDU
	maxRecv := int(c.sess.params.OurMaxRecvDataSegmentLength)
	for {
		err := iscsi.ReadPDU(c.br, &req, c.digests, maxRecv)
		if err != nil {
			if errors.Is(err, iscsi.ErrDataDigest) {
				c.reject(&req, rejectDataDigest)
				continue
			}
			if errors.Is(err, iscsi.ErrDataTooLong) {
				c.reject(&req, rejectProtocol)
			}
			return err
		}
		c.lastRecv.Store(time.Now().UnixNano())
		if err := c.handle(&req); err != nil {
			return err
		}
	}
}

func (c *conn) handle(req *iscsi.PDU) error {
	op := req.Opcode()
	if c.sess.discovery && op != iscsi.OpText && op != iscsi.OpLogout && op != iscsi.OpNOPOut {
		c.reject(req, rejectProtocol)
		return nil
	}
	switch op {
	case iscsi.OpNOPOut:
		c.nopOut(req)
	case iscsi.OpSCSICommand:
		c.scsiCommand(req)
	case iscsi.OpDataOut:
		return c.dataOut(req)
	case iscsi.OpTaskMgmt:
		c.taskMgmt(req)
	case iscsi.OpText:
		c.text(req)
	case iscsi.OpLogout:
		c.logout(req)
	case iscsi.OpSNACK:
		c.reject(req, rejectSNACK)
	case iscsi.OpLogin:
		c.reject(req, rejectProtocol)
	default:
		c.reject(req, rejectNotSupported)
	}
	return nil
}

// ordered runs fn for a command PDU in CmdSN order (see cmdWindow): at once when it is
// immediate or next in order, later when it arrived ahead of ExpCmdSN (then fn gets a
// copy of req, whose buffers the reader reuses). Commands outside the window are
// dropped silently (RFC 7143 4.2.2.1).
func (c *conn) ordered(req *iscsi.PDU, fn func(*iscsi.PDU)) {
	sn, imm := req.U32(24), req.Immediate()
	if !c.win.receive(sn, imm, false) {
		c.log.Debug("dropping command outside the CmdSN window", "op", req.Opcode().String(), "cmdsn", sn)
		return
	}
	if imm {
		fn(req)
		return
	}
	cp := clonePDU(req)
	c.win.deliver(sn, false, deliverFunc(func() { fn(cp) }))
}

// clonePDU returns a copy of p that shares no buffer with it.
func clonePDU(p *iscsi.PDU) *iscsi.PDU {
	cp := &iscsi.PDU{BHS: p.BHS}
	if len(p.AHS) > 0 {
		cp.AHS = append([]byte(nil), p.AHS...)
	}
	if len(p.Data) > 0 {
		cp.Data = append([]byte(nil), p.Data...)
	}
	return cp
}

// commandDone closes a counted command's slot in the window.
func (c *conn) commandDone() { c.win.done() }

func (c *conn) cmdSNs() (exp, max uint32) { return c.win.sns() }

// pinger sends a NOP-In when the initiator has been silent for NopInterval and drops
// the connection when a ping stays unanswered as long.
func (c *conn) pinger(done <-chan struct{}) {
	iv := c.srv.opts.NopInterval
	tick := time.NewTicker(iv / 2)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			if p := c.pingPending.Load(); p != 0 {
				if now.UnixNano()-p > int64(iv) {
					c.log.Info("initiator does not answer NOP-In, dropping the connection")
					c.shutdown()
					return
				}
				continue
			}
			if now.UnixNano()-c.lastRecv.Load() > int64(iv) {
				c.pingPending.Store(now.UnixNano())
				m := newMsg(iscsi.OpNOPIn, statKeep)
				m.pdu.BHS[1] = iscsi.FlagFinal
				m.pdu.SetU32(16, iscsi.ReservedTag)
				m.pdu.SetU32(20, pingTTT)
				c.send(m)
			}
		}
	}
}

// pingTTT is the target transfer tag of target-initiated NOP-In pings.
const pingTTT = 0x7fffffff
