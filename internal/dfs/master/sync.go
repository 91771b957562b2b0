package master

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// Durability, truncate fencing and lock reclaim (see "Durability and lock
// reclaim" in docs/protocols/dfs.md).
//
// MetaSync answers once the metadata changes answered before it are on disk
// (meta.Store.WaitDurable): fsync on a mount ends with it.
//
// A truncate frees the chunks past the new end. A client that asked to write
// one of them in the last writeLease may still hold its location in its
// cache and write there: the data would land in a chunk no file uses. So
// before the truncate is answered, every live holder of such a chunk deletes
// its copy; the chunkserver then refuses writes to it (a tombstone), and the
// client asks the master again and writes to the file's new chunk.
//
// LockReclaim takes a lock again on a client's new connection: a master
// restart (or a broken connection) ended the old session and its locks.

// revokeTimeout bounds the wait for one chunkserver to delete a freed copy;
// one that does not answer is unreachable for clients too, or lost.
const revokeTimeout = time.Second

// lockGrace is how long a restarted master (one whose namespace already held
// files) holds new lock requests, so that reconnecting clients take their
// locks again first (clients notice a restart within a second).
const lockGrace = 5 * time.Second

// durability is the master's state for the messages above.
type durability struct {
	ctx context.Context // the master's lifetime, for revocations
}

// startDurability runs in Start.
func (m *Master) startDurability(ctx context.Context) {
	m.dur.ctx = ctx
	if m.meta.Inodes() > 1 {
		// Files existed before this run: clients of the previous run may
		// hold locks they will take again.
		m.posix.table().graceUntil(time.Now().Add(lockGrace))
	}
}

// handleDurability answers MetaSync and LockReclaim; handled is false for
// any other message.
func (m *Master) handleDurability(ctx context.Context, f *proto.Frame) (out []byte, handled bool, err error) {
	switch f.Type {
	case proto.MsgMetaSync:
		if len(f.Payload) != 0 {
			return nil, true, fmt.Errorf("MetaSync with %d payload bytes: %w", len(f.Payload), proto.ErrBadField)
		}
		return nil, true, m.meta.WaitDurable()
	case proto.MsgLockReclaim:
		var l proto.Lock
		if err := l.Decode(f.Payload); err != nil {
			return nil, true, err
		}
		if l.Type == proto.LockUnlock {
			return nil, true, fmt.Errorf("reclaim of an unlock on inode %d: %w", l.Ino, syscall.EINVAL)
		}
		if _, err := m.meta.Getattr(l.Ino); err != nil {
			return nil, true, err
		}
		s, err := m.sessionOf(ctx)
		if err != nil {
			return nil, true, err
		}
		if !m.posix.table().reclaim(s.id, &l) {
			return nil, true, fmt.Errorf("reclaim lock inode %d bytes %d-%d: taken by another client: %w", l.Ino, l.Start, l.End, syscall.EAGAIN)
		}
		return nil, true, nil
	}
	return nil, false, nil
}

// revokeWrites deletes, on every live holder, the copies of the chunks a
// truncate freed that a client asked to write in the last writeLease, and
// returns when they answered (or revokeTimeout passed). Call it before
// forget(freed), which drops the holders from the chunk map.
func (m *Master) revokeWrites(freed []meta.Chunk) {
	type job struct {
		id   uint64
		addr string
	}
	var jobs []job
	m.mu.Lock()
	for _, c := range freed {
		if t, ok := m.lastWrite[c.ID]; !ok || time.Since(t) >= writeLease {
			continue // no client holds a write location for it any more
		}
		for a := range m.locs[c.ID] {
			if cs := m.servers[a]; cs != nil && m.alive(cs) {
				jobs = append(jobs, job{c.ID, a})
			}
		}
	}
	m.mu.Unlock()
	if len(jobs) == 0 || m.dur.ctx == nil {
		return
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(m.dur.ctx, revokeTimeout)
			defer cancel()
			p, err := m.peer(ctx, j.addr)
			if err == nil {
				var e proto.Enc
				(&proto.ChunkRef{ID: j.id}).Encode(&e) // version 0: any
				_, err = p.Call(ctx, proto.MsgChunkDelete, e.B)
			}
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				m.log.Warn("deleting a truncated chunk's copy failed", "chunk", fmt.Sprintf("%016x", j.id), "server", j.addr, "err", err)
			}
		}()
	}
	wg.Wait()
}

// MetaUnsynced reports whether some answered metadata change may not be on
// disk yet (meta.Store.Unsynced).
func (m *Master) MetaUnsynced() bool { return m.meta.Unsynced() }
