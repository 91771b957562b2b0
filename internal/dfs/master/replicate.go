package master

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// replicationLoop restores chunks below their goal and drops extra copies,
// a bounded number per tick.
func (m *Master) replicationLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.ReplicationInterval)
	defer t.Stop()
	lastExpire := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.replicateOnce(ctx)
		if time.Since(lastExpire) > time.Minute {
			lastExpire = time.Now()
			m.expireIntents(lastExpire)
			m.expireBad(lastExpire)
			m.expireWrites(lastExpire)
		}
	}
}

// badHold is how long a chunkserver that held a bad copy of a chunk gets no
// new copy of it.
const badHold = time.Minute

// writeLease is how long after a client's last WriteChunk the replication
// loop leaves the chunk alone: the client may still be sending data to the
// copies it was given (clients cache a chunk's copies for at most a second).
const writeLease = 3 * time.Second

func (m *Master) expireWrites(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, t := range m.lastWrite {
		if now.Sub(t) > writeLease {
			delete(m.lastWrite, id)
		}
	}
}

// writing reports whether a client may be writing chunk id.
func (m *Master) writing(id uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.lastWrite[id]
	return ok && time.Since(t) < writeLease
}

func (m *Master) expireBad(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, byAddr := range m.bad {
		for a, t := range byAddr {
			if now.Sub(t) > badHold {
				delete(byAddr, a)
			}
		}
		if len(byAddr) == 0 {
			delete(m.bad, id)
		}
	}
}

// dropFreed forgets the chunks of deleted or truncated files and queues the
// deletion of their copies: each chunkserver gets the list in the reply to
// its next heartbeat.
func (m *Master) dropFreed(freed []meta.Chunk) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range freed {
		for a := range m.locs[c.ID] {
			m.pendingDel[a] = append(m.pendingDel[a], proto.ChunkRef{ID: c.ID, Version: max(c.Version, m.vers[c.ID])})
		}
		delete(m.locs, c.ID)
		delete(m.vers, c.ID)
		delete(m.bad, c.ID)
	}
}

type repJob struct {
	c    meta.Chunk
	have []string
	goal int
}

func (m *Master) replicateOnce(ctx context.Context) {
	var under, over []repJob
	err := m.meta.ForEachChunk(func(_ uint64, _ uint32, goal uint8, c meta.Chunk) {
		if m.writing(c.ID) {
			return // next tick, once the writer is done
		}
		have := m.locations(c)
		switch {
		case len(have) > 0 && len(have) < int(goal):
			under = append(under, repJob{c, have, int(goal)})
		case len(have) > int(goal):
			over = append(over, repJob{c, have, int(goal)})
		}
	})
	if err != nil {
		m.log.Error("replication scan failed", "err", err)
		return
	}
	sortEndangered(under)
	budget := m.cfg.ReplicationsPerTick
	for _, j := range under {
		if budget == 0 || ctx.Err() != nil {
			return
		}
		budget--
		if err := m.addCopy(ctx, j); err != nil {
			m.log.Warn("replication failed", "chunk", fmt.Sprintf("%016x", j.c.ID), "err", err)
		}
	}
	for _, j := range over {
		if budget == 0 || ctx.Err() != nil {
			return
		}
		budget--
		// Drop the copy on the fullest server.
		victim := m.fullest(j.have)
		if err := m.dropCopy(ctx, j.c, victim); err != nil {
			m.log.Warn("dropping an extra copy failed", "chunk", fmt.Sprintf("%016x", j.c.ID), "server", victim, "err", err)
		}
	}
}

// sortEndangered orders under-goal chunks most endangered first: fewest
// copies, then most copies missing.
func sortEndangered(under []repJob) {
	sort.SliceStable(under, func(i, j int) bool {
		if len(under[i].have) != len(under[j].have) {
			return len(under[i].have) < len(under[j].have)
		}
		return under[i].goal-len(under[i].have) > under[j].goal-len(under[j].have)
	})
}

func (m *Master) peer(ctx context.Context, addr string) (*proto.Client, error) {
	m.mu.Lock()
	p := m.peers[addr]
	m.mu.Unlock()
	if p != nil && p.Err() == nil {
		return p, nil
	}
	p, err := proto.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.peers[addr] = p
	m.mu.Unlock()
	return p, nil
}

// addCopy asks the emptiest live chunkserver without the chunk to copy it
// from one that has it.
func (m *Master) addCopy(ctx context.Context, j repJob) error {
	m.mu.Lock()
	var target string
	for _, cs := range m.liveLocked() {
		if _, bad := m.bad[j.c.ID][cs.addr]; !m.locs[j.c.ID][cs.addr] && !bad && cs.free >= minFree {
			target = cs.addr
			cs.free -= min(cs.free, meta.ChunkSize)
			break
		}
	}
	m.mu.Unlock()
	if target == "" {
		return fmt.Errorf("chunk %016x: no chunkserver for another copy: %w", j.c.ID, ErrNoSpace)
	}
	p, err := m.peer(ctx, target)
	if err != nil {
		return err
	}
	// Spread the reads over the copies; a failed source is likely another
	// on the next try.
	src := j.have[rand.IntN(len(j.have))]
	m.mu.Lock()
	if m.replicating[j.c.ID] != nil || time.Since(m.lastWrite[j.c.ID]) < writeLease {
		m.mu.Unlock()
		return nil // a writer came first: next tick
	}
	done := make(chan struct{})
	m.replicating[j.c.ID] = done
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.replicating, j.c.ID)
		m.mu.Unlock()
		close(done)
	}()
	var e proto.Enc
	(&proto.ChunkRef{ID: j.c.ID, Version: j.c.Version}).Encode(&e)
	e.String(src)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := p.Call(cctx, proto.MsgChunkReplicate, e.B); err != nil {
		return fmt.Errorf("chunk %016x copy %s -> %s: %w", j.c.ID, src, target, err)
	}
	m.mu.Lock()
	stale := m.vers[j.c.ID] != j.c.Version
	m.mu.Unlock()
	if stale { // the chunk moved to a new version while copying
		return fmt.Errorf("chunk %016x v%d copy to %s: version changed while copying", j.c.ID, j.c.Version, target)
	}
	m.mu.Lock()
	m.addLocLocked(j.c.ID, j.c.Version, target)
	m.mu.Unlock()
	m.log.Info("chunk replicated", "chunk", fmt.Sprintf("%016x", j.c.ID), "from", src, "to", target)
	return nil
}

func (m *Master) fullest(addrs []string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	best, bestFree := addrs[0], ^uint64(0)
	for _, a := range addrs {
		if cs := m.servers[a]; cs != nil && cs.free < bestFree {
			best, bestFree = a, cs.free
		}
	}
	return best
}

func (m *Master) dropCopy(ctx context.Context, c meta.Chunk, addr string) error {
	p, err := m.peer(ctx, addr)
	if err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.locs[c.ID], addr)
	m.mu.Unlock()
	var e proto.Enc
	(&proto.ChunkRef{ID: c.ID, Version: c.Version}).Encode(&e)
	_, err = p.Call(ctx, proto.MsgChunkDelete, e.B)
	return err
}

// copyStates fills info.Chunks.States from the chunk map; the valid copies
// are the ones Info counted.
func (m *Master) copyStates(info *Info) {
	st := &info.Chunks.States
	st.Valid = info.Chunks.Copies
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, addrs := range m.locs {
		if _, ok := m.vers[id]; !ok {
			continue
		}
		for a := range addrs {
			if cs := m.servers[a]; cs == nil || !m.alive(cs) {
				st.Lost++
			}
		}
	}
	for _, l := range m.pendingDel {
		st.Stale += len(l)
	}
	for _, byAddr := range m.bad {
		st.Bad += len(byAddr)
	}
}
