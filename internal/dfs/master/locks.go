package master

import (
	"sync"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// lockTable holds the file locks of every client session, keyed by inode.
// POSIX (fcntl) locks belong to a lock owner (a process, as the kernel names
// it) within a session and cover byte ranges; flock locks belong to an open
// file description and cover the whole file. The two kinds never conflict
// with each other, as on Linux. The table lives in memory: locks end with
// the session that took them, and a master restart ends every session.
type lockTable struct {
	mu      sync.Mutex
	byIno   map[uint64][]heldLock
	changed chan struct{} // closed and replaced whenever a lock goes away
}

type heldLock struct {
	sess uint64
	proto.Lock
}

func newLockTable() *lockTable {
	return &lockTable{byIno: map[uint64][]heldLock{}, changed: make(chan struct{})}
}

func (h *heldLock) conflicts(sess uint64, l *proto.Lock) bool {
	if h.Kind != l.Kind || h.sess == sess && h.Owner == l.Owner {
		return false
	}
	if h.End < l.Start || l.End < h.Start {
		return false
	}
	return h.Type == proto.LockWrite || l.Type == proto.LockWrite
}

// test returns the first lock that conflicts with l, if any.
func (t *lockTable) test(sess uint64, l *proto.Lock) (proto.Lock, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range t.byIno[l.Ino] {
		if h.conflicts(sess, l) {
			return h.Lock, true
		}
	}
	return proto.Lock{}, false
}

// set applies l for sess: it takes, converts or releases the owner's lock
// over l's range. It returns false, changing nothing, when another owner
// holds a conflicting lock. The channel is closed when some lock next goes
// away (to wait on before trying again).
func (t *lockTable) set(sess uint64, l *proto.Lock) (bool, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	held := t.byIno[l.Ino]
	if l.Type != proto.LockUnlock {
		for _, h := range held {
			if h.conflicts(sess, l) {
				return false, t.changed
			}
		}
	}
	// Cut the owner's own locks of this kind out of the range, keeping the
	// parts outside it, then add the new lock.
	out := held[:0:0]
	released := false
	for _, h := range held {
		if h.sess != sess || h.Owner != l.Owner || h.Kind != l.Kind || h.End < l.Start || l.End < h.Start {
			out = append(out, h)
			continue
		}
		released = true
		if h.Start < l.Start {
			left := h
			left.End = l.Start - 1
			out = append(out, left)
		}
		if h.End > l.End {
			right := h
			right.Start = l.End + 1
			out = append(out, right)
		}
	}
	if l.Type != proto.LockUnlock {
		out = append(out, heldLock{sess: sess, Lock: *l})
	}
	if len(out) == 0 {
		delete(t.byIno, l.Ino)
	} else {
		t.byIno[l.Ino] = out
	}
	if released {
		t.notifyLocked()
	}
	return true, t.changed
}

func (t *lockTable) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// dropSession releases every lock of a session that ended.
func (t *lockTable) dropSession(sess uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for ino, held := range t.byIno {
		out := held[:0]
		for _, h := range held {
			if h.sess != sess {
				out = append(out, h)
			}
		}
		n += len(held) - len(out)
		if len(out) == 0 {
			delete(t.byIno, ino)
		} else {
			t.byIno[ino] = out
		}
	}
	if n > 0 {
		t.notifyLocked()
	}
}

// count returns the number of held locks (for tests).
func (t *lockTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, held := range t.byIno {
		n += len(held)
	}
	return n
}
