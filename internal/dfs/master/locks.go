package master

import (
	"sync"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// lockTable holds the file locks of every client session, keyed by inode.
// POSIX (fcntl) locks belong to a lock owner (a process, as the kernel names
// it) within a session and cover byte ranges; flock locks belong to an open
// file description and cover the whole file. The two kinds never conflict
// with each other, as on Linux. The table lives in memory: locks end with
// the session that took them, and a master restart ends every session.
// Clients take their locks again on their new connection (reclaim); during
// the grace period after a restart, new lock requests (Setlk, Getlk) wait so
// that reclaims come first (see sync.go).
type lockTable struct {
	mu      sync.Mutex
	byIno   map[uint64][]heldLock
	changed chan struct{} // closed and replaced whenever a lock goes away
	grace   time.Time     // until then only reclaims are served
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

// graceUntil starts the grace period after a restart.
func (t *lockTable) graceUntil(end time.Time) {
	t.mu.Lock()
	t.grace = end
	t.mu.Unlock()
}

// awaitGrace waits for the end of the grace period, if one runs.
func (t *lockTable) awaitGrace() {
	t.mu.Lock()
	wait := time.Until(t.grace)
	t.mu.Unlock()
	if wait > 0 {
		time.Sleep(wait)
	}
}

// reclaim takes l again for sess on its new connection, without waiting for
// the grace period; it fails, changing nothing, if another session holds a
// conflicting lock (taken while this client was away).
func (t *lockTable) reclaim(sess uint64, l *proto.Lock) bool {
	ok, _ := t.apply(sess, l)
	return ok
}

// test returns the first lock that conflicts with l, if any.
func (t *lockTable) test(sess uint64, l *proto.Lock) (proto.Lock, bool) {
	t.awaitGrace()
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
	if l.Type != proto.LockUnlock {
		t.awaitGrace()
	}
	return t.apply(sess, l)
}

// apply is set without the grace period.
func (t *lockTable) apply(sess uint64, l *proto.Lock) (bool, <-chan struct{}) {
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
		if h.sess != sess || h.Owner != l.Owner || h.Kind != l.Kind || !h.Overlaps(l) {
			out = append(out, h)
			continue
		}
		released = true
		for _, part := range h.Outside(l) {
			out = append(out, heldLock{sess: sess, Lock: part})
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
