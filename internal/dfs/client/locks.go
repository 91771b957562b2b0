package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"syscall"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// Lock reclaim. The master keeps file locks in memory, per connection: a
// master restart or a broken connection ends them. The client therefore
// keeps its own record of the locks it holds and, on every new connection
// (before any call is retried on it), takes each one again with
// LockReclaim. A restarted master serves reclaims at once and holds new lock
// requests for a grace period (master/sync.go), so a lock held before the
// restart is held after it. While it holds locks, the client checks its
// master connection every lockWatch, so an idle holder reconnects (and
// reclaims) within a second of the master's return.
//
// If another client took a conflicting lock in between (the connection
// broke without a restart, or the holder came back after the grace period),
// the reclaim fails: the lock is lost. The client logs it, and every later
// lock request of that owner on that file fails with EIO, until the owner
// unlocks the whole file (as close does), so a program never goes on
// believing it holds a lock it lost.

// lockWatch is how often a client holding locks checks its master connection.
const lockWatch = 250 * time.Millisecond

type lockOwner struct {
	ino, owner uint64
	kind       uint8
}

// heldLocks is the client's record of its locks.
type heldLocks struct {
	mu       sync.Mutex
	held     map[lockOwner][]proto.Lock // ranges of one owner, not overlapping
	lost     map[lockOwner]error
	hooked   bool // reclaim registered with the master connection
	watching bool // the watch goroutine runs
	log      *slog.Logger
}

// SetLogger sets where lost locks are reported (slog.Default() otherwise).
func (c *Client) SetLogger(l *slog.Logger) {
	c.locks.mu.Lock()
	c.locks.log = l
	c.locks.mu.Unlock()
}

// lockCheck fails a lock request of an owner whose lock on the file was
// lost with EIO; an unlock of the whole file clears the mark (and goes on to
// the master).
func (c *Client) lockCheck(l *proto.Lock) error {
	h := &c.locks
	h.mu.Lock()
	defer h.mu.Unlock()
	k := lockOwner{l.Ino, l.Owner, l.Kind}
	err := h.lost[k]
	if err == nil {
		return nil
	}
	if l.Type == proto.LockUnlock && l.Start == 0 && l.End >= math.MaxInt64 {
		delete(h.lost, k)
		return nil
	}
	return err
}

// lockDone records the result of a Setlk: a granted lock or unlock changes
// the owner's ranges as it did in the master.
func (c *Client) lockDone(l *proto.Lock, err error) {
	if err != nil {
		return
	}
	h := &c.locks
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held == nil {
		h.held = map[lockOwner][]proto.Lock{}
	}
	k := lockOwner{l.Ino, l.Owner, l.Kind}
	h.held[k] = applyLock(h.held[k], l)
	if len(h.held[k]) == 0 {
		delete(h.held, k)
	}
	if len(h.held) == 0 {
		return
	}
	if !h.hooked {
		h.hooked = true
		c.master.onReconnect(c.reclaimLocks)
	}
	if !h.watching {
		h.watching = true
		go c.watchMaster()
	}
}

// applyLock cuts l's range out of one owner's locks and adds l unless it is
// an unlock: the master's rule for an owner's own locks (master/locks.go).
func applyLock(held []proto.Lock, l *proto.Lock) []proto.Lock {
	out := held[:0:0]
	for _, h := range held {
		out = append(out, h.Outside(l)...)
	}
	if l.Type != proto.LockUnlock {
		out = append(out, *l)
	}
	return out
}

// reclaimLocks takes every held lock again on mc, a new connection to the
// master. A lock another client holds now is lost (see above); a broken
// connection fails the reconnect, which the caller retries.
func (c *Client) reclaimLocks(ctx context.Context, mc *proto.Client) error {
	h := &c.locks
	h.mu.Lock()
	var all []proto.Lock
	for _, ls := range h.held {
		all = append(all, ls...)
	}
	log := h.log
	h.mu.Unlock()
	if log == nil {
		log = slog.Default()
	}
	for _, l := range all {
		var e proto.Enc
		l.Encode(&e)
		_, err := mc.Call(ctx, proto.MsgLockReclaim, e.B)
		var er *proto.ErrorReply
		if err != nil && !errors.As(err, &er) {
			return fmt.Errorf("reclaim lock on inode %d: %w", l.Ino, err)
		}
		if err == nil {
			continue
		}
		lost := fmt.Errorf("lock on inode %d (owner %x, bytes %d-%d) lost while the master was unreachable: %w: %w",
			l.Ino, l.Owner, l.Start, l.End, err, syscall.EIO)
		log.Error("dfs: file lock lost", "ino", l.Ino, "owner", fmt.Sprintf("%x", l.Owner), "start", l.Start, "end", l.End, "err", err)
		h.mu.Lock()
		k := lockOwner{l.Ino, l.Owner, l.Kind}
		unlock := l
		unlock.Type = proto.LockUnlock
		h.held[k] = applyLock(h.held[k], &unlock)
		if len(h.held[k]) == 0 {
			delete(h.held, k)
		}
		if h.lost == nil {
			h.lost = map[lockOwner]error{}
		}
		h.lost[k] = lost
		h.mu.Unlock()
	}
	return nil
}

// watchMaster reconnects to the master (which reclaims the locks) soon
// after the connection breaks, as long as this client holds locks.
func (c *Client) watchMaster() {
	t := time.NewTicker(lockWatch)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		h := &c.locks
		h.mu.Lock()
		if len(h.held) == 0 {
			h.watching = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		_, _ = c.master.conn(c.ctx) // redials and reclaims if the connection broke
	}
}

// HeldLocks returns the number of lock ranges this client holds (tests).
func (c *Client) HeldLocks() int {
	h := &c.locks
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ls := range h.held {
		n += len(ls)
	}
	return n
}
