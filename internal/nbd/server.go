package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// Export is one device offered under a name.
type Export struct {
	Name        string
	Description string
	Device      blockdev.Device
}

// Config is what a Server serves.
type Config struct {
	// Listen is the address to listen on: host:port (port 10809 is NBD's), or
	// unix:PATH for a Unix domain socket, the cheaper transport for a client on the
	// same host (libnbd URI nbd+unix:///EXPORT?socket=PATH).
	Listen  string
	Exports []Export
	Logger  *slog.Logger
	// MaxInFlight bounds the requests executed at once per connection (default 64).
	MaxInFlight int
}

// Server is an embeddable NBD server: New, Start, Ready, Close.
type Server struct {
	cfg     Config
	exports map[string]*Export
	ua      map[string]*blockdev.Unaligned // per export, shared by its connections
	log     *slog.Logger
	ln      net.Listener
	ready   chan struct{}

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
}

// New checks cfg and returns a server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if len(cfg.Exports) == 0 {
		return nil, errors.New("nbd: no export configured")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	s := &Server{cfg: cfg, exports: map[string]*Export{}, ua: map[string]*blockdev.Unaligned{}, log: cfg.Logger, ready: make(chan struct{}), done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	for i := range cfg.Exports {
		e := &cfg.Exports[i]
		if _, dup := s.exports[e.Name]; dup {
			return nil, fmt.Errorf("nbd: export %q named twice", e.Name)
		}
		s.exports[e.Name] = e
		s.ua[e.Name] = &blockdev.Unaligned{Dev: e.Device}
	}
	return s, nil
}

// Start listens and serves in the background until Close or ctx is done.
func (s *Server) Start(ctx context.Context) error {
	network, addr := "tcp", s.cfg.Listen
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", path
		// A socket left by a previous server that died is replaced; any other file is not.
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(path)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return fmt.Errorf("nbd: listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// URI returns the NBD URI (as libnbd's tools and fio's nbd engine take it) of export
// name on this server: nbd://HOST:PORT/NAME, or nbd+unix:///NAME?socket=PATH.
func (s *Server) URI(name string) string {
	if a, ok := s.ln.Addr().(*net.UnixAddr); ok {
		return "nbd+unix:///" + url.PathEscape(name) + "?socket=" + a.Name
	}
	return "nbd://" + s.ln.Addr().String() + "/" + url.PathEscape(name)
}

// Serve serves on ln in the background (for tests and unix sockets).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.ln = ln
	close(s.ready)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			go s.Close() // Close waits for this goroutine
		case <-s.done:
		}
	}()
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !s.track(c, true) {
				c.Close()
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.track(c, false)
				if err := s.serveConn(ctx, c); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					s.log.Info("nbd connection ended", "remote", c.RemoteAddr().String(), "err", err)
				}
			}()
		}
	}()
	return nil
}

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		s.conns[c] = struct{}{}
		return true
	}
	delete(s.conns, c)
	c.Close()
	return true
}

// Close stops listening, closes every connection and waits for them. It does not close
// the exported devices, which belong to the caller.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
	}
	s.wg.Wait()
	return nil
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) error {
	br := bufio.NewReaderSize(c, 64<<10)
	e, err := s.negotiate(br, c)
	if err != nil || e == nil {
		return err
	}
	s.log.Debug("nbd export opened", "export", e.Name, "remote", c.RemoteAddr().String())
	return newTransmission(s.ua[e.Name], br, c, s.cfg.MaxInFlight).run(ctx)
}

// negotiate runs the fixed newstyle handshake and returns the export chosen, or nil
// when the client ended negotiation without choosing one.
func (s *Server) negotiate(r io.Reader, w io.Writer) (*Export, error) {
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[:], magicInit)
	binary.BigEndian.PutUint64(hello[8:], magicOpt)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := w.Write(hello[:]); err != nil {
		return nil, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(r, cf[:]); err != nil {
		return nil, err
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	if clientFlags&^uint32(flagFixedNewstyle|flagNoZeroes) != 0 {
		return nil, fmt.Errorf("client flags %#x: %w", clientFlags, ErrProtocol)
	}
	noZeroes := clientFlags&flagNoZeroes != 0
	for {
		o, err := readOption(r)
		if err != nil {
			return nil, err
		}
		switch o.code {
		case optExportName:
			e := s.exports[string(o.data)]
			if e == nil {
				return nil, fmt.Errorf("export %q not found", o.data)
			}
			b := make([]byte, 10, 134)
			binary.BigEndian.PutUint64(b, uint64(e.Device.Size()))
			binary.BigEndian.PutUint16(b[8:], transmissionFlags(e.Device))
			if !noZeroes {
				b = b[:134]
			}
			_, err := w.Write(b)
			return e, err
		case optAbort:
			optReply(w, o.code, repAck, nil)
			return nil, nil
		case optList:
			if len(o.data) != 0 {
				err = optReply(w, o.code, repErrInvalid, nil)
				break
			}
			names := make([]string, 0, len(s.exports))
			for n := range s.exports {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				d := binary.BigEndian.AppendUint32(nil, uint32(len(n)))
				if err = optReply(w, o.code, repServer, append(d, n...)); err != nil {
					return nil, err
				}
			}
			err = optReply(w, o.code, repAck, nil)
		case optInfo, optGo:
			e, err := s.info(w, o)
			if err != nil || e == nil || o.code == optInfo {
				if err != nil {
					return nil, err
				}
				continue
			}
			return e, nil
		case optStartTLS, optStructuredReply:
			err = optReply(w, o.code, repErrUnsup, nil)
		default:
			err = optReply(w, o.code, repErrUnsup, nil)
		}
		if err != nil {
			return nil, err
		}
	}
}

// info answers NBD_OPT_INFO or NBD_OPT_GO; it returns the export when the answer was a
// success (for GO, transmission starts next).
func (s *Server) info(w io.Writer, o option) (*Export, error) {
	name, infos, err := parseInfoRequest(o.data)
	if err != nil {
		return nil, optReply(w, o.code, repErrInvalid, []byte(err.Error()))
	}
	e := s.exports[name]
	if e == nil {
		return nil, optReply(w, o.code, repErrUnknown, []byte("no export named "+name))
	}
	d := e.Device
	exp := make([]byte, 12)
	binary.BigEndian.PutUint16(exp, infoExport)
	binary.BigEndian.PutUint64(exp[2:], uint64(d.Size()))
	binary.BigEndian.PutUint16(exp[10:], transmissionFlags(d))
	if err := optReply(w, o.code, repInfo, exp); err != nil {
		return nil, err
	}
	for _, t := range infos {
		switch t {
		case infoBlockSize:
			b := make([]byte, 14)
			binary.BigEndian.PutUint16(b, infoBlockSize)
			binary.BigEndian.PutUint32(b[2:], uint32(d.BlockSize()))
			binary.BigEndian.PutUint32(b[6:], 4096)
			binary.BigEndian.PutUint32(b[10:], maxRequestLen)
			err = optReply(w, o.code, repInfo, b)
		case infoName:
			err = optReply(w, o.code, repInfo, append([]byte{0, infoName}, e.Name...))
		case infoDescription:
			if e.Description != "" {
				err = optReply(w, o.code, repInfo, append([]byte{0, infoDescription}, e.Description...))
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return e, optReply(w, o.code, repAck, nil)
}

func transmissionFlags(d blockdev.Device) uint16 {
	f := uint16(tfHasFlags | tfSendFlush | tfSendFUA | tfSendTrim | tfSendWriteZeroes | tfSendCache | tfCanMultiConn)
	if blockdev.IsReadOnly(d) {
		f |= tfReadOnly
	}
	return f
}
