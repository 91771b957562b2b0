// Package master is the DFS master: it owns the namespace and the chunk map
// (in a meta.Store), keeps the registry of chunkservers from their
// registrations and heartbeats, and places new chunks on distinct
// chunkservers, emptiest first. Chunkservers connect on one port (9420),
// clients on another (9421); both speak the proto wire format.
package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// Default listen addresses.
const (
	DefaultChunkserverListen = ":9420"
	DefaultClientListen      = ":9421"
)

// DefaultHeartbeatTimeout is how long a chunkserver may stay silent before
// it is considered lost.
const DefaultHeartbeatTimeout = 10 * time.Second

// ErrNoSpace is returned when too few live chunkservers exist to place a chunk.
var ErrNoSpace = errors.New("master: not enough live chunkservers")

// Config configures a Master.
type Config struct {
	Dir               string // metadata directory
	ChunkserverListen string // DefaultChunkserverListen if empty
	ClientListen      string // DefaultClientListen if empty
	Log               *slog.Logger
	// HeartbeatTimeout: silence after which a chunkserver is lost
	// (DefaultHeartbeatTimeout if zero).
	HeartbeatTimeout time.Duration
	// ReplicationInterval is the period of the replication loop (1s if zero).
	ReplicationInterval time.Duration
	// ReplicationsPerTick rate-limits the replication loop (16 if zero).
	ReplicationsPerTick int
}

// Master is an embeddable DFS master: New, Start, Ready, Close.
type Master struct {
	cfg   Config
	log   *slog.Logger
	meta  *meta.Store
	ready chan struct{}

	csLn, clLn net.Listener
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	mu      sync.Mutex
	peers   map[string]*proto.Client   // connections to chunkservers for replication
	servers map[string]*csInfo         // by address
	locs    map[uint64]map[string]bool // chunk id -> chunkserver addresses
	vers    map[uint64]uint32          // chunk id -> newest version reported
}

type csInfo struct {
	addr        string
	total, free uint64
	lastSeen    time.Time
}

// New opens the metadata in cfg.Dir.
func New(cfg Config) (*Master, error) {
	if cfg.Log == nil {
		return nil, errors.New("master: Config.Log is nil")
	}
	if cfg.ChunkserverListen == "" {
		cfg.ChunkserverListen = DefaultChunkserverListen
	}
	if cfg.ClientListen == "" {
		cfg.ClientListen = DefaultClientListen
	}
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cfg.ReplicationInterval == 0 {
		cfg.ReplicationInterval = time.Second
	}
	if cfg.ReplicationsPerTick == 0 {
		cfg.ReplicationsPerTick = 16
	}
	st, err := meta.Open(filepath.Join(cfg.Dir, "meta"))
	if err != nil {
		return nil, err
	}
	return &Master{cfg: cfg, log: cfg.Log, meta: st, ready: make(chan struct{}),
		servers: map[string]*csInfo{}, peers: map[string]*proto.Client{}, locs: map[uint64]map[string]bool{}, vers: map[uint64]uint32{}}, nil
}

// Start listens on both ports and serves until ctx is cancelled or Close.
func (m *Master) Start(ctx context.Context) error {
	var err error
	if m.csLn, err = net.Listen("tcp", m.cfg.ChunkserverListen); err != nil {
		return fmt.Errorf("master listen %s: %w", m.cfg.ChunkserverListen, err)
	}
	if m.clLn, err = net.Listen("tcp", m.cfg.ClientListen); err != nil {
		m.csLn.Close()
		return fmt.Errorf("master listen %s: %w", m.cfg.ClientListen, err)
	}
	ctx, m.cancel = context.WithCancel(ctx)
	m.serve(ctx, m.csLn, m.handleChunkserver)
	m.serve(ctx, m.clLn, m.handleClient)
	go func() { <-ctx.Done(); m.csLn.Close(); m.clLn.Close() }()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.replicationLoop(ctx)
	}()
	close(m.ready)
	m.log.Info("master listening", "chunkservers", m.csLn.Addr().String(), "clients", m.clLn.Addr().String())
	return nil
}

func (m *Master) serve(ctx context.Context, ln net.Listener, h proto.Handler) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				proto.ServeConn(ctx, c, h, m.log)
			}()
		}
	}()
}

// Ready is closed once both ports accept connections.
func (m *Master) Ready() <-chan struct{} { return m.ready }

// ChunkserverAddr and ClientAddr return the listening addresses (after Start).
func (m *Master) ChunkserverAddr() string { return m.csLn.Addr().String() }

// ClientAddr returns the clients' listening address (after Start).
func (m *Master) ClientAddr() string { return m.clLn.Addr().String() }

// Close stops serving and closes the metadata.
func (m *Master) Close() error {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	m.mu.Lock()
	for _, p := range m.peers {
		p.Close()
	}
	m.mu.Unlock()
	return m.meta.Close()
}

func (m *Master) handleChunkserver(ctx context.Context, f *proto.Frame) ([]byte, error) {
	switch f.Type {
	case proto.MsgRegister, proto.MsgHeartbeat:
		var r proto.Register
		if err := r.Decode(f.Payload); err != nil {
			return nil, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		cs := m.servers[r.Addr]
		if cs == nil {
			cs = &csInfo{addr: r.Addr}
			m.servers[r.Addr] = cs
			m.log.Info("chunkserver registered", "addr", r.Addr, "chunks", len(r.Chunks))
		}
		cs.total, cs.free, cs.lastSeen = r.Total, r.Free, time.Now()
		for _, c := range r.Chunks {
			m.addLocLocked(c.ID, c.Version, r.Addr)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("master: chunkserver message %s: %w", f.Type, errUnsupported)
}

var errUnsupported = errors.New("unsupported message")

func (m *Master) addLocLocked(id uint64, version uint32, addr string) {
	if version < m.vers[id] {
		return // a stale copy; the replication loop will delete it
	}
	if version > m.vers[id] {
		m.vers[id] = version
		m.locs[id] = map[string]bool{}
	}
	if m.locs[id] == nil {
		m.locs[id] = map[string]bool{}
	}
	m.locs[id][addr] = true
}

// liveLocked returns the live chunkservers, emptiest (most free bytes) first.
func (m *Master) liveLocked() []*csInfo {
	var out []*csInfo
	for _, cs := range m.servers {
		if m.alive(cs) {
			out = append(out, cs)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].free != out[j].free {
			return out[i].free > out[j].free
		}
		return out[i].addr < out[j].addr
	})
	return out
}

// place picks goal distinct live chunkservers for a new chunk, emptiest
// first, and records them as the chunk's locations.
func (m *Master) place(c meta.Chunk, goal int) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	live := m.liveLocked()
	if len(live) == 0 {
		return nil, fmt.Errorf("place chunk %016x: %w", c.ID, ErrNoSpace)
	}
	n := min(goal, len(live))
	out := make([]string, 0, n)
	for _, cs := range live[:n] {
		out = append(out, cs.addr)
		m.addLocLocked(c.ID, c.Version, cs.addr)
		// Count the chunk against the free space until the next heartbeat so
		// a burst of allocations spreads out.
		cs.free -= min(cs.free, meta.ChunkSize)
	}
	return out, nil
}

// locations returns the live chunkservers holding chunk c.
func (m *Master) locations(c meta.Chunk) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	if m.vers[c.ID] != c.Version {
		return nil
	}
	for addr := range m.locs[c.ID] {
		if cs := m.servers[addr]; cs != nil && m.alive(cs) {
			out = append(out, addr)
		}
	}
	sort.Strings(out)
	return out
}

func (m *Master) alive(cs *csInfo) bool { return time.Since(cs.lastSeen) < m.cfg.HeartbeatTimeout }
