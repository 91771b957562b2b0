package master

import (
	"context"
	"fmt"
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
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.replicateOnce(ctx)
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
	// Most endangered first: fewest copies, then most missing.
	sort.SliceStable(under, func(i, j int) bool {
		if len(under[i].have) != len(under[j].have) {
			return len(under[i].have) < len(under[j].have)
		}
		return under[i].goal-len(under[i].have) > under[j].goal-len(under[j].have)
	})
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
		if !m.locs[j.c.ID][cs.addr] {
			target = cs.addr
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
	var e proto.Enc
	(&proto.ChunkRef{ID: j.c.ID, Version: j.c.Version}).Encode(&e)
	e.String(j.have[0])
	if _, err := p.Call(ctx, proto.MsgChunkReplicate, e.B); err != nil {
		return fmt.Errorf("chunk %016x copy %s -> %s: %w", j.c.ID, j.have[0], target, err)
	}
	m.mu.Lock()
	m.addLocLocked(j.c.ID, j.c.Version, target)
	m.mu.Unlock()
	m.log.Info("chunk replicated", "chunk", fmt.Sprintf("%016x", j.c.ID), "from", j.have[0], "to", target)
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
