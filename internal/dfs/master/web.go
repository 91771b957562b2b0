package master

import (
	"sort"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
)

// Status is a point-in-time view of the master for the web console and
// /metrics (internal/web): Info, plus what only the master's memory holds
// (heartbeat times, per-server copy counts, the replication queue, client
// sessions). It is built by two scans of the chunk table, Info's and its
// own, so while chunks change the two may differ by the changes between them.
type Status struct {
	Time    time.Time `json:"time"`    // when the status was taken
	Started time.Time `json:"started"` // when the master started serving
	// Restarted: the metadata held chunks when the master started.
	Restarted        bool              `json:"restarted"`
	ClientAddr       string            `json:"client_addr"`
	ChunkserverAddr  string            `json:"chunkserver_addr"`
	HeartbeatTimeout time.Duration     `json:"heartbeat_timeout"`
	Info             *Info             `json:"info"`   // exactly what Info returns
	Inodes           uint64            `json:"inodes"` // live inodes in the namespace
	MetaSync         string            `json:"meta_sync"`
	MetaSyncInterval time.Duration     `json:"meta_sync_interval"` // background fsync period; 0 in "always" mode
	Servers          []ServerStatus    `json:"servers"`
	Copies           []CopyCount       `json:"copies"` // chunks by goal and valid copies, nonzero cells only
	Replication      ReplicationStatus `json:"replication"`
	Sessions         []SessionStatus   `json:"sessions"`
	ScanTime         time.Duration     `json:"scan_time"` // how long building this status took
}

// ServerStatus is one chunkserver as the master's registry knows it.
type ServerStatus struct {
	Addr string `json:"addr"`
	Live bool   `json:"live"`
	// LastHeartbeat is when its last registration or heartbeat arrived; zero
	// when the master counted it lost on purpose (its connection closed, or a
	// write could not reach it) and it has not reported since.
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Total         uint64    `json:"total"`
	Free          uint64    `json:"free"`
	// Chunks counts the copies the chunk map places on this server (current
	// versions only; on a lost server these are the lost copies).
	Chunks int `json:"chunks"`
	// BadCopies counts its copies dropped after a CRC error within the last
	// minute (the replication loop avoids the server for those chunks).
	BadCopies int `json:"bad_copies"`
	// PendingDeletes counts copies it will be told to delete with its next
	// heartbeat (stale versions, chunks of deleted files).
	PendingDeletes int `json:"pending_deletes"`
}

// CopyCount is one cell of the chunk matrix: Chunks chunks have goal Goal
// and Copies valid copies.
type CopyCount struct {
	Goal   int `json:"goal"`
	Copies int `json:"copies"`
	Chunks int `json:"chunks"`
}

// ReplicationStatus describes the replication loop's work.
type ReplicationStatus struct {
	// Undergoal and Overgoal count the chunks the loop would act on now:
	// below or above their goal with at least one valid copy, and not being
	// written by a client (those wait for the write lease to end).
	Undergoal int `json:"undergoal"`
	Overgoal  int `json:"overgoal"`
	// InProgress counts the copies being made at this moment.
	InProgress int `json:"in_progress"`
	// PerTick copies (or drops) at most, every Interval.
	PerTick  int           `json:"per_tick"`
	Interval time.Duration `json:"interval"`
}

// SessionStatus is one client connection that used the POSIX requests
// (open handles, locks): a mount, as the master sees it.
type SessionStatus struct {
	ID         uint64 `json:"id"`
	OpenInodes int    `json:"open_inodes"` // distinct inodes held open
	Handles    int    `json:"handles"`     // open handles
	Locks      int    `json:"locks"`       // fcntl and flock locks held
}

// Status builds the master's current status (after Start).
func (m *Master) Status() (*Status, error) {
	start := time.Now()
	info, err := m.Info()
	if err != nil {
		return nil, err
	}
	st := &Status{Time: start, Started: m.started, Restarted: m.restarted,
		ClientAddr: m.ClientAddr(), ChunkserverAddr: m.ChunkserverAddr(),
		HeartbeatTimeout: m.cfg.HeartbeatTimeout, Info: info, Inodes: m.meta.Inodes(),
		MetaSync: m.cfg.MetaSync.Sync.String()}
	if m.cfg.MetaSync.Sync == meta.SyncInterval {
		st.MetaSyncInterval = m.cfg.MetaSync.SyncInterval
		if st.MetaSyncInterval <= 0 {
			st.MetaSyncInterval = meta.DefaultSyncInterval
		}
	}
	st.Replication.PerTick, st.Replication.Interval = m.cfg.ReplicationsPerTick, m.cfg.ReplicationInterval
	if st.Copies, err = m.copyMatrix(&st.Replication); err != nil {
		return nil, err
	}
	st.Servers = m.serverStatus()
	st.Sessions = m.sessionStatus()
	st.ScanTime = time.Since(start)
	return st, nil
}

// copyMatrix counts chunks by goal and valid copies, and the chunks the
// replication loop would act on (as replicateOnce chooses them).
func (m *Master) copyMatrix(rep *ReplicationStatus) ([]CopyCount, error) {
	type cell struct{ goal, copies int }
	cells := map[cell]int{}
	err := m.meta.ForEachChunk(func(_ uint64, _ uint32, goal uint8, c meta.Chunk) {
		n := len(m.locations(c))
		cells[cell{int(goal), n}]++
		if n == 0 || m.writing(c.ID) {
			return
		}
		switch {
		case n < int(goal):
			rep.Undergoal++
		case n > int(goal):
			rep.Overgoal++
		}
	})
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	rep.InProgress = len(m.replicating)
	m.mu.Unlock()
	out := make([]CopyCount, 0, len(cells))
	for k, n := range cells {
		out = append(out, CopyCount{Goal: k.goal, Copies: k.copies, Chunks: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Goal != out[j].Goal {
			return out[i].Goal < out[j].Goal
		}
		return out[i].Copies < out[j].Copies
	})
	return out, nil
}

// serverStatus lists the registered chunkservers by address.
func (m *Master) serverStatus() []ServerStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	chunks := map[string]int{}
	for id, addrs := range m.locs {
		if _, ok := m.vers[id]; !ok {
			continue
		}
		for a := range addrs {
			chunks[a]++
		}
	}
	bad := map[string]int{}
	for _, byAddr := range m.bad {
		for a := range byAddr {
			bad[a]++
		}
	}
	out := make([]ServerStatus, 0, len(m.servers))
	for _, cs := range m.servers {
		out = append(out, ServerStatus{Addr: cs.addr, Live: m.alive(cs), LastHeartbeat: cs.lastSeen,
			Total: cs.total, Free: cs.free, Chunks: chunks[cs.addr], BadCopies: bad[cs.addr],
			PendingDeletes: len(m.pendingDel[cs.addr])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// sessionStatus lists the client connections with POSIX state, by id.
func (m *Master) sessionStatus() []SessionStatus {
	p := &m.posix
	p.mu.Lock()
	sessions := make([]*connSession, 0, len(p.byConn))
	for _, s := range p.byConn {
		sessions = append(sessions, s)
	}
	p.mu.Unlock()
	locks := map[uint64]int{}
	t := p.table()
	t.mu.Lock()
	for _, held := range t.byIno {
		for _, h := range held {
			locks[h.sess]++
		}
	}
	t.mu.Unlock()
	out := make([]SessionStatus, 0, len(sessions))
	for _, s := range sessions {
		ss := SessionStatus{ID: s.id, Locks: locks[s.id]}
		s.mu.Lock()
		ss.OpenInodes = len(s.opens)
		for _, n := range s.opens {
			ss.Handles += n
		}
		s.mu.Unlock()
		out = append(out, ss)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
