package master

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// recoverChunk handles a write that failed on some copy: it probes every
// known copy, moves the reachable ones to a new version (so a copy that
// missed the write can never be read again), records the version and returns
// the surviving copies. The replication loop then restores the goal.
func (m *Master) recoverChunk(ctx context.Context, ino uint64, idx uint32) (*proto.ChunkLoc, error) {
	c, err := m.meta.Chunk(ino, idx)
	if err != nil {
		return nil, err
	}
	if c.ID == 0 {
		return nil, fmt.Errorf("recover chunk %d of inode %d: no such chunk: %w", idx, ino, ErrNoSpace)
	}
	m.mu.Lock()
	var addrs []string
	for a := range m.locs[c.ID] {
		addrs = append(addrs, a)
	}
	m.mu.Unlock()
	nv := c.Version + 1
	var ok, empty []string
	for _, a := range addrs {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		p, err := m.peer(pctx, a)
		if err == nil {
			var e proto.Enc
			e.U64(c.ID)
			e.U32(c.Version)
			e.U32(nv)
			_, err = p.Call(pctx, proto.MsgChunkSetVersion, e.B)
		}
		cancel()
		if errors.Is(err, syscall.ENOENT) {
			// Alive but without the chunk: it never acknowledged any of its data.
			empty = append(empty, a)
			continue
		}
		if err != nil {
			m.mu.Lock()
			if cs := m.servers[a]; cs != nil {
				cs.lastSeen = time.Time{} // unreachable: no new chunks until it heartbeats again
			}
			// If it comes back without restarting, its next heartbeat deletes
			// the copy that missed the write.
			m.pendingDel[a] = append(m.pendingDel[a], proto.ChunkRef{ID: c.ID, Version: c.Version})
			m.mu.Unlock()
			m.log.Warn("chunk copy lost during a write", "chunk", fmt.Sprintf("%016x", c.ID), "server", a, "err", err)
			continue
		}
		ok = append(ok, a)
	}
	if len(ok) == 0 {
		// No copy holds acknowledged data: the chunk's writes all failed, so
		// a fresh copy on the live servers is as good as any.
		ok = empty
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("recover chunk %016x: no reachable copy: %w", c.ID, ErrNoSpace)
	}
	nc := meta.Chunk{ID: c.ID, Version: nv}
	if err := m.meta.SetChunkVersion(ino, idx, nc); err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.vers[c.ID] = nv
	m.locs[c.ID] = map[string]bool{}
	for _, a := range ok {
		m.locs[c.ID][a] = true
	}
	m.mu.Unlock()
	return &proto.ChunkLoc{ID: c.ID, Version: nv, Servers: ok}, nil
}
