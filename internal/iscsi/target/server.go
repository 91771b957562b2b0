// Package target is rampart's iSCSI target server: portals, target portal groups, ACLs,
// CHAP, login, discovery and the full feature phase of sessions, serving logical units
// of internal/scsi over the protocol of internal/iscsi.
//
// A Server is embeddable: New, Start (binds every portal), Ready, Apply (moves a running
// server to a new Config, touching only what changed) and Close. Each connection has one
// reader goroutine, a goroutine per SCSI command in flight and one writer that serialises
// responses, assigning StatSN in order and flushing once per batch.
package target

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Options configure a Server.
type Options struct {
	Config   Config // initial configuration
	StateDir string // where per-LU state lives (PR APTPL files); "" = no persistence
	Logger   *slog.Logger
	// LoginTimeout bounds a login from the first byte to full feature phase (0: 15 s).
	LoginTimeout time.Duration
	// NopInterval is how long a connection may be idle before the target pings it with
	// a NOP-In; a ping unanswered for another NopInterval drops the connection (0: 10 s).
	NopInterval time.Duration
	// QueueDepth is the CmdSN window of a session (0: 128).
	QueueDepth int
}

// ErrClosed is returned by calls on a closed server.
var ErrClosed = errors.New("target: server closed")

// Server is an iSCSI target server.
type Server struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	cfg      Config
	units    map[string]*unit        // by backstore name
	targets  map[string]*targetState // by IQN
	portals  map[string]*portal      // by configured ADDR:PORT
	sessions map[*session]struct{}
	conns    map[net.Conn]struct{} // every accepted connection, logged in or not
	nextTSIH uint16
	started  bool
	closed   bool
	ready    chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // accept loops and connections
}

// portal is one listening socket.
type portal struct {
	addr string // as configured
	ln   net.Listener
}

// New checks opts.Config and returns a server that serves it once started.
func New(opts Options) (*Server, error) {
	if err := Validate(opts.Config); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LoginTimeout == 0 {
		opts.LoginTimeout = 15 * time.Second
	}
	if opts.NopInterval == 0 {
		opts.NopInterval = 10 * time.Second
	}
	if opts.QueueDepth <= 0 {
		opts.QueueDepth = 128
	}
	return &Server{
		opts:     opts,
		log:      opts.Logger,
		units:    map[string]*unit{},
		targets:  map[string]*targetState{},
		portals:  map[string]*portal{},
		sessions: map[*session]struct{}{},
		conns:    map[net.Conn]struct{}{},
		ready:    make(chan struct{}),
	}, nil
}

// Start opens every backstore and binds every portal; it returns once all listen.
// Connections live until Close or ctx is cancelled.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.started {
		s.mu.Unlock()
		return errors.New("target: server already started")
	}
	s.started = true
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.mu.Unlock()
	if err := s.Apply(ctx, s.opts.Config); err != nil {
		s.Close()
		return err
	}
	close(s.ready)
	return nil
}

// Ready is closed once Start has bound every portal.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the bound address of every portal.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, p := range sortedPortals(s.portals) {
		out = append(out, p.ln.Addr())
	}
	return out
}

// Close closes listeners and sessions and waits for their goroutines, then closes the
// logical units and their volumes.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	for _, p := range s.portals {
		p.ln.Close()
	}
	sessions := make([]*session, 0, len(s.sessions))
	inSession := map[net.Conn]bool{}
	for ss := range s.sessions {
		sessions = append(sessions, ss)
		inSession[ss.conn.nc] = true
	}
	for nc := range s.conns {
		if !inSession[nc] {
			nc.Close() // connections still logging in
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, ss := range sessions {
		wg.Go(ss.closeWithNotice)
	}
	wg.Wait()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, u := range s.units {
		if err := u.close(); err != nil {
			errs = append(errs, fmt.Errorf("close backstore %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// listen binds one portal and starts accepting on it. Called with s.mu held.
func (s *Server) listen(addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(s.ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on portal %s: %w", addr, err)
	}
	p := &portal{addr: addr, ln: ln}
	s.portals[addr] = p
	s.wg.Add(1)
	go s.acceptLoop(p)
	s.log.Info("iscsi portal listening", "portal", addr, "addr", ln.Addr().String())
	return nil
}

func (s *Server) acceptLoop(p *portal) {
	defer s.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.wg.Add(1)
		s.conns[nc] = struct{}{}
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(s.ctx, nc, p.addr)
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
		}()
	}
}
