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
	"math/rand/v2"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
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

// ErrFull is returned when every live chunkserver is out of space; writers
// see ENOSPC.
var ErrFull = fmt.Errorf("master: every chunkserver is full: %w", syscall.ENOSPC)

// minFree is the free space below which a chunkserver gets no new chunks.
const minFree = 4 << 20

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
	// MetaSync says when metadata changes are fsynced (meta.SyncInterval,
	// the zero value, or meta.SyncAlways).
	MetaSync meta.Options
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
	// pendingDel lists, per chunkserver, copies to delete, sent in the reply
	// to its next heartbeat: stale versions and the chunks of deleted files.
	pendingDel map[string][]proto.ChunkRef
	// bad holds copies dropped after a CRC error, by chunk and server, with
	// the time: the replication loop does not copy there again for a while.
	bad map[uint64]map[string]time.Time
	// lastWrite is when a client last asked to write each chunk, and
	// replicating holds the chunks being copied: the replication loop leaves
	// a chunk alone while a client may be writing it (writeLease), and a
	// WriteChunk waits for a copy in progress, so no new copy misses a write.
	lastWrite   map[uint64]time.Time
	replicating map[uint64]chan struct{}

	started   time.Time
	restarted bool // the metadata held chunks when the master started

	reqMu   sync.Mutex
	intents map[reqKey]*intent

	slotMu sync.Mutex
	slots  map[chunkSlot]*slotLock // WriteChunk in progress, by inode and index

	posix posixState // open handles and locks of client connections (posix.go)

	offers   offerTable    // chunks offered to new files, not bound yet (create.go)
	requests requestCounts // client requests run, by type (speed.go)

	dur durability // fsync, truncate fencing, lock reclaim (sync.go; dfs-durability)
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
	st, err := meta.OpenWith(filepath.Join(cfg.Dir, "meta"), cfg.MetaSync)
	if err != nil {
		return nil, err
	}
	m := &Master{cfg: cfg, log: cfg.Log, meta: st, ready: make(chan struct{}),
		servers: map[string]*csInfo{}, peers: map[string]*proto.Client{}, locs: map[uint64]map[string]bool{}, vers: map[uint64]uint32{},
		pendingDel: map[string][]proto.ChunkRef{}, bad: map[uint64]map[string]time.Time{}, intents: map[reqKey]*intent{},
		lastWrite: map[uint64]time.Time{}, replicating: map[uint64]chan struct{}{}, slots: map[chunkSlot]*slotLock{}}
	err = st.ForEachChunk(func(uint64, uint32, uint8, meta.Chunk) { m.restarted = true })
	if err == nil {
		err = m.loadIntents()
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	return m, nil
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
	m.started = time.Now()
	m.startDurability(ctx) // sync.go (dfs-durability)
	m.serve(ctx, m.csLn, m.chunkserverConn, nil)
	m.serve(ctx, m.clLn, func(net.Conn) (proto.Handler, func()) { return m.handleClientReq, func() {} }, m.inlineClient)
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

// serve accepts connections on ln; perConn returns each one's handler and
// what to do when it closes; inline picks the requests answered on the
// reading goroutine (proto.ServeConnInline; nil: none).
func (m *Master) serve(ctx context.Context, ln net.Listener, perConn func(net.Conn) (proto.Handler, func()), inline func(*proto.Frame) bool) {
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
				h, closed := perConn(c)
				proto.ServeConnInline(ctx, c, h, inline, m.log)
				closed()
			}()
		}
	}()
}

// chunkserverConn serves one chunkserver connection. When it closes (the
// chunkserver died or lost the network) the chunkserver counts as lost at
// once, without waiting for the heartbeat timeout, so its chunks are
// re-replicated sooner; it is live again with its next registration.
func (m *Master) chunkserverConn(net.Conn) (proto.Handler, func()) {
	var mu sync.Mutex
	var addr string
	h := func(ctx context.Context, f *proto.Frame) ([]byte, error) {
		if f.Type == proto.MsgRegister {
			var r proto.Register
			if r.Decode(f.Payload) == nil {
				mu.Lock()
				addr = r.Addr
				mu.Unlock()
			}
		}
		return m.handleChunkserver(ctx, f)
	}
	closed := func() {
		mu.Lock()
		a := addr
		mu.Unlock()
		if a == "" {
			return
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if cs := m.servers[a]; cs != nil && m.alive(cs) {
			cs.lastSeen = time.Time{}
			m.log.Warn("chunkserver connection closed, counted lost until it registers again", "addr", a)
		}
	}
	return h, closed
}

// Ready is closed once both ports accept connections.
func (m *Master) Ready() <-chan struct{} { return m.ready }

// ChunkserverAddr and ClientAddr return the listening addresses (after Start).
func (m *Master) ChunkserverAddr() string { return m.csLn.Addr().String() }

// ClientAddr returns the clients' listening address (after Start).
func (m *Master) ClientAddr() string { return m.clLn.Addr().String() }

// Close stops serving and closes the metadata.
func (m *Master) Close() error {
	m.posix.shutdown() // client connections end, clients do not (posix.go)
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
		var want map[uint64]uint32
		if len(r.Chunks) > 0 {
			var err error
			if want, err = m.chunkVersions(); err != nil {
				return nil, err
			}
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		cs := m.servers[r.Addr]
		if cs == nil || f.Type == proto.MsgRegister {
			if cs == nil {
				cs = &csInfo{addr: r.Addr}
				m.servers[r.Addr] = cs
			}
			m.log.Info("chunkserver registered", "addr", r.Addr, "chunks", len(r.Chunks))
		}
		cs.total, cs.free, cs.lastSeen = r.Total, r.Free, time.Now()
		var del proto.ChunkList
		for _, c := range r.Chunks {
			if v, ok := want[c.ID]; ok && c.Version < v {
				// A copy that missed writes (its server was away when the
				// version moved on): never served, deleted now.
				del.Chunks = append(del.Chunks, c)
				continue
			}
			m.addLocLocked(c.ID, c.Version, r.Addr)
		}
		del.Chunks = append(del.Chunks, m.takeDeletesLocked(r.Addr, MaxDeletesPerBeat-len(del.Chunks))...)
		if len(del.Chunks) == 0 {
			return nil, nil
		}
		m.log.Info("chunkserver told to delete stale copies", "addr", r.Addr, "chunks", len(del.Chunks))
		var e proto.Enc
		del.Encode(&e)
		return e.B, nil
	case proto.MsgBadChunk:
		var b proto.BadChunk
		if err := b.Decode(f.Payload); err != nil {
			return nil, err
		}
		if m.badCopy(b) {
			return []byte{1}, nil
		}
		return []byte{0}, nil
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

// chunkVersions returns the version of every chunk in the namespace.
func (m *Master) chunkVersions() (map[uint64]uint32, error) {
	out := map[uint64]uint32{}
	err := m.meta.ForEachChunk(func(_ uint64, _ uint32, _ uint8, c meta.Chunk) { out[c.ID] = c.Version })
	return out, err
}

// badCopy records a copy that failed its CRC check. If another live copy of
// the chunk exists the bad one is dropped from the chunk map and badCopy
// returns true: the chunkserver deletes it and the replication loop makes a
// new copy from a good one. A sole copy is kept: its good blocks still read.
func (m *Master) badCopy(b proto.BadChunk) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := fmt.Sprintf("%016x", b.ID)
	if b.Version < m.vers[b.ID] {
		m.log.Info("stale copy reported bad, deleting it", "chunk", id, "server", b.Addr)
		return true
	}
	if b.Version != m.vers[b.ID] {
		return false // newer than the map knows: a write in progress decides
	}
	others := 0
	for a := range m.locs[b.ID] {
		if cs := m.servers[a]; a != b.Addr && cs != nil && m.alive(cs) {
			others++
		}
	}
	if !m.locs[b.ID][b.Addr] {
		return others > 0 // already dropped (an earlier report whose answer was lost)
	}
	if others == 0 {
		m.log.Error("the only live copy of a chunk has a bad block", "chunk", id, "server", b.Addr, "block", b.Block)
		return false
	}
	delete(m.locs[b.ID], b.Addr)
	if m.bad[b.ID] == nil {
		m.bad[b.ID] = map[string]time.Time{}
	}
	m.bad[b.ID][b.Addr] = time.Now()
	m.log.Warn("bad copy dropped, re-replicating from a good one", "chunk", id, "server", b.Addr, "block", b.Block, "good copies", others)
	return true
}

// liveLocked returns the live chunkservers, emptiest (most free bytes) first.
func (m *Master) liveLocked() []*csInfo {
	var out []*csInfo
	for _, cs := range m.servers {
		if m.alive(cs) {
			out = append(out, cs)
		}
	}
	// Emptiest first; among equally empty ones (chunkservers sharing a file
	// system report the same free space) a random order spreads the chunks.
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	sort.SliceStable(out, func(i, j int) bool { return out[i].free > out[j].free })
	return out
}

// place picks goal distinct live chunkservers for a new chunk, emptiest
// first, and records them as the chunk's locations.
func (m *Master) place(c meta.Chunk, goal int) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var live []*csInfo
	all := m.liveLocked()
	for _, cs := range all {
		if cs.free >= minFree {
			live = append(live, cs)
		}
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("place chunk %016x: %w", c.ID, ErrNoSpace)
	}
	if len(live) == 0 {
		return nil, fmt.Errorf("place chunk %016x: %w", c.ID, ErrFull)
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
