package client

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// CacheTTL is how long the client trusts what the master told it about a
// file without asking again: a chunk's copies and version (for reads and for
// writes) and a file's size (to clamp reads at the end of the file). It is
// the kernel's attribute timeout, so the mount sees no staler state than the
// kernel already allows. A failed read or write drops the entry at once.
const CacheTTL = time.Second

// mtimeDelay is how long a write that did not grow its file may wait before
// the master records its mtime: writes within it share one WriteEnd (and one
// metadata fsync). Growing writes record the new size before they return.
const mtimeDelay = 50 * time.Millisecond

type chunkKey struct {
	ino uint64
	idx uint32
}

type cachedLoc struct {
	loc *proto.ChunkLoc
	at  time.Time
}

type cachedSize struct {
	size uint64
	at   time.Time
}

// cache holds chunk locations and file sizes the master gave recently, and
// the mtimes of writes not yet recorded.
type cache struct {
	mu     sync.Mutex
	read   map[chunkKey]cachedLoc
	write  map[chunkKey]cachedLoc
	sizes  map[uint64]cachedSize
	mtimes map[uint64]pendingEnd // ino -> the WriteEnd to send
	timer  *time.Timer
}

type pendingEnd struct {
	end   uint64
	mtime int64
}

func newCache() *cache {
	return &cache{read: map[chunkKey]cachedLoc{}, write: map[chunkKey]cachedLoc{},
		sizes: map[uint64]cachedSize{}, mtimes: map[uint64]pendingEnd{}}
}

func (c *cache) loc(write bool, k chunkKey) *proto.ChunkLoc {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.read
	if write {
		m = c.write
	}
	e, ok := m[k]
	if !ok || time.Since(e.at) > CacheTTL {
		return nil
	}
	return e.loc
}

// putLoc remembers a chunk's copies; a location for writing serves reads too.
func (c *cache) putLoc(write bool, k chunkKey, loc *proto.ChunkLoc) {
	if loc.ID == 0 || len(loc.Servers) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := cachedLoc{loc: loc, at: time.Now()}
	c.read[k] = e
	if write {
		c.write[k] = e
	}
}

func (c *cache) dropLoc(k chunkKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.read, k)
	delete(c.write, k)
}

// dropFile forgets everything about ino (a truncate frees its chunks).
func (c *cache) dropFile(ino uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.read {
		if k.ino == ino {
			delete(c.read, k)
		}
	}
	for k := range c.write {
		if k.ino == ino {
			delete(c.write, k)
		}
	}
	delete(c.sizes, ino)
}

func (c *cache) size(ino uint64) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.sizes[ino]
	if !ok || time.Since(e.at) > CacheTTL {
		return 0, false
	}
	return e.size, true
}

func (c *cache) putSize(ino, size uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sizes[ino] = cachedSize{size: size, at: time.Now()}
}

// deferEnd queues a WriteEnd for a write that did not grow ino; flush is
// called once, mtimeDelay later, for all queued ones.
func (c *cache) deferEnd(ino, end uint64, mtime int64, flush func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.mtimes[ino]
	c.mtimes[ino] = pendingEnd{end: max(p.end, end), mtime: max(p.mtime, mtime)}
	if c.timer == nil {
		c.timer = time.AfterFunc(mtimeDelay, flush)
	}
}

// takeEnds returns the queued WriteEnds (of ino only, if ino is not 0).
func (c *cache) takeEnds(ino uint64) map[uint64]pendingEnd {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[uint64]pendingEnd{}
	for i, p := range c.mtimes {
		if ino == 0 || i == ino {
			out[i] = p
			delete(c.mtimes, i)
		}
	}
	if ino == 0 {
		c.timer = nil
	}
	return out
}

// sendEnds records the queued WriteEnds (of ino only, if not 0) at the master.
func (c *Client) sendEnds(ctx context.Context, ino uint64) error {
	c.endsMu.Lock()
	defer c.endsMu.Unlock()
	var first error
	for i, p := range c.cache.takeEnds(ino) {
		if _, err := c.writeEnd(ctx, i, p.end, p.mtime); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// flushEnds sends every queued WriteEnd. A failure loses only an mtime
// update (the data is on the chunkservers, the size was recorded).
func (c *Client) flushEnds() { _ = c.sendEnds(c.ctx, 0) }

// Flush waits until ino's queued writes (WriteAtAsync) are on every copy
// (in the chunkservers' page caches, not yet on their disks: see Sync),
// records the mtime of its writes at the master, and returns the first
// error of a queued write since the last Flush or Sync. close(2) on the
// mount ends with it.
func (c *Client) Flush(ctx context.Context, ino uint64) error {
	err := c.waitQueue(ctx, ino, true)
	return errors.Join(err, c.sendEnds(ctx, ino))
}
