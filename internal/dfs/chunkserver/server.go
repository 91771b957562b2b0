package chunkserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// DefaultListen is the chunkserver's default data port.
const DefaultListen = ":9422"

// Config configures a Server.
type Config struct {
	Data   []string     // data folders
	Listen string       // address for clients and peers; DefaultListen if empty
	Log    *slog.Logger // required
	// Master is the master's chunkserver address (host:9420); empty runs
	// the chunkserver alone (tests).
	Master string
	// Advertise is the address clients use to reach this chunkserver; by
	// default the listening address, with an unspecified host replaced by
	// the local address of the connection to the master.
	Advertise string
	// Heartbeat is the interval of heartbeats to the master; 2s if zero.
	Heartbeat time.Duration
	// ScrubRate bounds the background scrub in bytes per second
	// (DefaultScrubRate if zero; negative turns the scrub off).
	ScrubRate int64
	// ScrubPause is the rest between two scrub passes (1 minute if zero).
	ScrubPause time.Duration
	// Capacity, if positive, caps the bytes the chunk files may take.
	Capacity int64
	// OpenFiles caps the chunk files kept open while idle (DefaultOpenFiles,
	// or less under a low RLIMIT_NOFILE, if zero).
	OpenFiles int
}

// DefaultScrubRate is the scrub's default pace: a full 1 TB disk in about
// 18 hours, a small share of a disk's bandwidth.
const DefaultScrubRate = 16 << 20

// Server is an embeddable chunkserver: New, Start, Ready, Close.
type Server struct {
	cfg   Config
	log   *slog.Logger
	store *Store
	ln    net.Listener
	ready chan struct{}

	ctx    context.Context // the server's lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	peers   map[string]*proto.Client
	masterC *proto.Client // the current master connection, nil if none
	addr    string        // the address registered with the master
}

// New checks cfg and opens the data folders.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		return nil, errors.New("chunkserver: Config.Log is nil")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	st, err := OpenStore(cfg.Data)
	if err != nil {
		return nil, err
	}
	st.SetCapacity(cfg.Capacity)
	st.SetOpenFiles(cfg.OpenFiles)
	return &Server{cfg: cfg, log: cfg.Log, store: st, ready: make(chan struct{}), peers: map[string]*proto.Client{}}, nil
}

// Store returns the server's chunk store.
func (s *Server) Store() *Store { return s.store }

// Start listens and serves until ctx is cancelled or Close is called.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("chunkserver listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	ctx, s.cancel = context.WithCancel(ctx)
	s.ctx = ctx
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				proto.ServeConnWith(ctx, c, s.handle, proto.ServeOptions{Buffer: writeBuffer}, s.log)
			}()
		}
	}()
	go func() { <-ctx.Done(); ln.Close() }()
	if s.cfg.Master != "" {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.masterLoop(ctx)
		}()
	}
	if s.cfg.ScrubRate >= 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.scrubLoop(ctx)
		}()
	}
	close(s.ready)
	s.log.Info("chunkserver listening", "addr", ln.Addr().String(), "folders", len(s.cfg.Data))
	return nil
}

// Ready is closed once the server accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the listening address (valid after Start).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving and closes the chunk files.
func (s *Server) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Lock()
	for _, p := range s.peers {
		p.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return s.store.Close()
}

func (s *Server) peer(ctx context.Context, addr string) (*proto.Client, error) {
	s.mu.Lock()
	p := s.peers[addr]
	if p != nil && p.Err() == nil {
		s.mu.Unlock()
		return p, nil
	}
	s.mu.Unlock()
	p, err := proto.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if old := s.peers[addr]; old != nil && old.Err() == nil {
		s.mu.Unlock()
		p.Close()
		return old, nil
	}
	s.peers[addr] = p
	s.mu.Unlock()
	return p, nil
}

func (s *Server) handle(ctx context.Context, f *proto.Frame) ([]byte, error) {
	switch f.Type {
	case proto.MsgChunkWrite:
		var m proto.ChunkWrite
		if err := m.Decode(f.Payload); err != nil {
			return nil, err
		}
		return nil, s.write(ctx, &m)
	case proto.MsgChunkRead:
		var m proto.ChunkRead
		if err := m.Decode(f.Payload); err != nil {
			return nil, err
		}
		if m.Length > proto.MaxPayload-4096 {
			return nil, fmt.Errorf("read chunk %016x of %d bytes: %w", m.ID, m.Length, proto.ErrTooLarge)
		}
		buf := make([]byte, m.Length)
		if err := s.store.ReadAt(m.ID, m.Version, buf, int64(m.Offset)); err != nil {
			var be *BlockError
			if errors.As(err, &be) {
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					s.reportBad(s.ctx, be) // not ctx: the reader may hang up first
				}()
			}
			return nil, err
		}
		return buf, nil
	case proto.MsgChunkCreate:
		var m proto.ChunkRef
		if err := m.Decode(f.Payload); err != nil {
			return nil, err
		}
		return nil, s.store.Create(m.ID, m.Version)
	case proto.MsgChunkDelete:
		var m proto.ChunkRef
		if err := m.Decode(f.Payload); err != nil {
			return nil, err
		}
		return nil, s.store.Delete(m.ID, m.Version)
	case proto.MsgChunkInfo:
		var m proto.ChunkRef
		if err := m.Decode(f.Payload); err != nil {
			return nil, err
		}
		n, err := s.store.Length(m.ID, m.Version)
		if err != nil {
			return nil, err
		}
		var e proto.Enc
		e.U64(uint64(n))
		return e.B, nil
	case proto.MsgChunkSetVersion:
		d := proto.NewDec(f.Payload)
		id, old, nv := d.U64(), d.U32(), d.U32()
		if err := d.Finish(); err != nil {
			return nil, fmt.Errorf("decode ChunkSetVersion: %w", err)
		}
		return nil, s.store.SetVersion(id, old, nv)
	case proto.MsgChunkSync:
		var m proto.ChunkSync
		if err := m.Decode(f.Payload); err != nil {
			return nil, err
		}
		return s.syncChunks(&m), nil
	case proto.MsgChunkReplicate:
		d := proto.NewDec(f.Payload)
		ref := proto.ChunkRef{ID: d.U64(), Version: d.U32()}
		src := d.String()
		if err := d.Finish(); err != nil {
			return nil, fmt.Errorf("decode ChunkReplicate: %w", err)
		}
		return nil, s.replicate(ctx, ref, src)
	}
	return nil, fmt.Errorf("chunkserver: message %s: %w", f.Type, errUnsupported)
}

var errUnsupported = errors.New("unsupported message")

// syncChunks fdatasyncs the chunks of m in parallel and answers one errno
// per chunk (0: on disk).
func (s *Server) syncChunks(m *proto.ChunkSync) []byte {
	out := proto.ChunkSyncReply{Errnos: make([]uint32, len(m.Chunks))}
	var wg sync.WaitGroup
	for i, c := range m.Chunks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.store.Sync(c.ID, c.Version); err != nil {
				out.Errnos[i] = uint32(proto.NewErrorReply(err).Errno)
				if errors.Is(err, ErrNoChunk) {
					// Deleted or moved on: the client asks the master where the data is.
					s.log.Debug("chunk sync of a copy not held", "chunk", fmt.Sprintf("%016x", c.ID), "version", c.Version, "err", err)
				} else {
					s.log.Warn("chunk sync failed", "chunk", fmt.Sprintf("%016x", c.ID), "version", c.Version, "err", err)
				}
			}
		}()
	}
	wg.Wait()
	var e proto.Enc
	out.Encode(&e)
	return e.B
}

// write stores m locally while forwarding it down the rest of the chain; it
// succeeds only if both do.
func (s *Server) write(ctx context.Context, m *proto.ChunkWrite) error {
	var fwdErr error
	var wg sync.WaitGroup
	if len(m.Chain) > 0 {
		next := m.Chain[0]
		fw := proto.ChunkWrite{ID: m.ID, Version: m.Version, Offset: m.Offset, Chain: m.Chain[1:], Data: m.Data}
		var e proto.Enc
		fw.EncodeHead(&e)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.peer(ctx, next)
			if err == nil {
				// The data goes out from the request's buffer, not a copy.
				_, err = p.CallParts(ctx, proto.MsgChunkWrite, e.B, fw.Data)
			}
			if err != nil {
				fwdErr = fmt.Errorf("forward chunk %016x write to %s: %w", m.ID, next, err)
			}
		}()
	}
	err := s.store.WriteAt(m.ID, m.Version, m.Data, int64(m.Offset))
	wg.Wait()
	if err != nil {
		return err
	}
	return fwdErr
}

// replicate copies chunk ref from the chunkserver at src: the length, then
// the data in pieces, into a fresh local chunk.
func (s *Server) replicate(ctx context.Context, ref proto.ChunkRef, src string) error {
	p, err := s.peer(ctx, src)
	if err != nil {
		return err
	}
	var e proto.Enc
	ref.Encode(&e)
	b, err := p.Call(ctx, proto.MsgChunkInfo, e.B)
	if err != nil {
		return fmt.Errorf("replicate chunk %016x from %s: %w", ref.ID, src, err)
	}
	d := proto.NewDec(b)
	n := int64(d.U64())
	if err := d.Finish(); err != nil || n > ChunkSize {
		return fmt.Errorf("replicate chunk %016x from %s: bad length %d: %w", ref.ID, src, n, proto.ErrShort)
	}
	// Start from an empty chunk: a copy held here already (a bad one the
	// master dropped, a stale one) must not mix with the new data.
	if err := s.store.Delete(ref.ID, 0); err != nil && !errors.Is(err, ErrNoChunk) {
		return err
	}
	if err := s.store.Create(ref.ID, ref.Version); err != nil {
		return err
	}
	const piece = 4 << 20
	for off := int64(0); off < n; off += piece {
		l := min(piece, n-off)
		e := proto.Enc{}
		(&proto.ChunkRead{ID: ref.ID, Version: ref.Version, Offset: uint32(off), Length: uint32(l)}).Encode(&e)
		data, err := p.Call(ctx, proto.MsgChunkRead, e.B)
		if err == nil && int64(len(data)) != l {
			err = fmt.Errorf("%d bytes, want %d: %w", len(data), l, proto.ErrShort)
		}
		if err == nil {
			err = s.store.WriteAt(ref.ID, ref.Version, data, off)
		}
		if err != nil {
			s.store.Delete(ref.ID, ref.Version)
			return fmt.Errorf("replicate chunk %016x from %s at %d: %w", ref.ID, src, off, err)
		}
	}
	// The master counts the copy once this returns: it must be on disk,
	// as the copies it was made from are once a client synced them.
	if err := s.store.Sync(ref.ID, ref.Version); err != nil {
		s.store.Delete(ref.ID, ref.Version)
		return fmt.Errorf("replicate chunk %016x from %s: %w", ref.ID, src, err)
	}
	return nil
}
