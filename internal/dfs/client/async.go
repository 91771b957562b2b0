package client

import (
	"context"
	"sync"
)

// Write-back: WriteAtAsync queues a write and returns at once; the file's
// queue sends its writes to the chunkservers as a sliding window: a queued
// write starts as soon as it overlaps no earlier unfinished write and fewer
// than maxInflight are on their way, so a sequential writer keeps its
// next pieces in flight while earlier ones are acknowledged, many small
// random writes go out together, and overlapping ones go in their order.
// Flush (and Sync) wait until the file's queue is empty and return the first
// error since the last Flush or Sync, as close and fsync report write-back
// errors. Every call that reads or changes the file's data or size here
// (ReadAt, Getattr, Setattr, WriteAt) first waits for its queue, so this
// client always sees its own writes.

// MaxQueued bounds the bytes queued per file; a writer past it waits.
const MaxQueued = 32 << 20

// maxInflight bounds the writes of one file on their way at once.
const maxInflight = 64

// StreamBuffer is the capacity of the buffers StreamBuf hands out.
const StreamBuffer = 8 << 20

// streamBufs holds StreamBuffer-sized buffers between writes, so that a
// sequential writer does not allocate (and the kernel zero) a fresh one per
// piece.
var streamBufs = sync.Pool{New: func() any { b := make([]byte, 0, StreamBuffer); return &b }}

// StreamBuf returns an empty buffer of capacity StreamBuffer, for a write
// to be given to WriteAtAsyncOwned (or back with PutStreamBuf).
func StreamBuf() []byte { return (*streamBufs.Get().(*[]byte))[:0] }

// PutStreamBuf gives back a buffer from StreamBuf that is no longer used;
// a buffer of another capacity is left to the garbage collector.
func PutStreamBuf(b []byte) {
	if cap(b) == StreamBuffer {
		b = b[:0]
		streamBufs.Put(&b)
	}
}

type queuedWrite struct {
	p       []byte
	off     int64
	owned   bool // p was given to the queue (WriteAtAsyncOwned)
	started bool
	done    bool
}

type fileQueue struct {
	pending  []*queuedWrite // queued and not finished, in queue order
	bytes    int            // bytes of pending
	inflight int            // pending writes started
	queued   uint64         // writes ever queued
	sent     uint64         // writes ever finished that no earlier unfinished write precedes
	err      error
	changed  chan struct{} // closed and replaced whenever the queue shrinks or stops
}

// idle reports whether nothing is queued or on its way.
func (q *fileQueue) idle() bool { return len(q.pending) == 0 }

type writeBack struct {
	mu    sync.Mutex
	files map[uint64]*fileQueue
	// send, if set, replaces writeAt for the queued writes (tests).
	send func(ctx context.Context, ino uint64, p []byte, off int64) error
}

func (w *writeBack) queue(ino uint64) *fileQueue {
	q := w.files[ino]
	if q == nil {
		q = &fileQueue{changed: make(chan struct{})}
		w.files[ino] = q
	}
	return q
}

func (q *fileQueue) signal() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// WriteAtAsync queues a write of p (copied) at off of file ino. It fails
// with the error of an earlier queued write of the file until Flush or Sync takes it.
func (c *Client) WriteAtAsync(ctx context.Context, ino uint64, p []byte, off int64) error {
	return c.enqueue(ctx, ino, p, off, false)
}

// WriteAtAsyncOwned is WriteAtAsync without the copy: p belongs to the
// queue once the call succeeded (a buffer of StreamBuffer capacity goes to
// StreamBuf's pool after it is sent); on an error the caller keeps it.
func (c *Client) WriteAtAsyncOwned(ctx context.Context, ino uint64, p []byte, off int64) error {
	return c.enqueue(ctx, ino, p, off, true)
}

func (c *Client) enqueue(ctx context.Context, ino uint64, p []byte, off int64, owned bool) error {
	w := &c.wb
	w.mu.Lock()
	var q *fileQueue
	for {
		q = w.queue(ino) // again after waiting: an idle queue may have gone
		if q.bytes == 0 || q.bytes+len(p) <= MaxQueued {
			break
		}
		ch := q.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		w.mu.Lock()
	}
	if err := q.err; err != nil {
		// Sticky until Flush or Sync takes it, so that close or fsync reports it
		// even if a write call's caller retried past it.
		w.mu.Unlock()
		return err
	}
	if !owned {
		p = append([]byte(nil), p...)
	}
	q.pending = append(q.pending, &queuedWrite{p: p, off: off, owned: owned})
	q.bytes += len(p)
	q.queued++
	c.pumpLocked(ino, q)
	w.mu.Unlock()
	// After queueing: no read-ahead piece starts while the write is queued,
	// and none fetched before it survives.
	c.ra.changed(ino)
	return nil
}

// writesQueued reports whether writes of ino are queued or on their way.
func (c *Client) writesQueued(ino uint64) bool {
	c.wb.mu.Lock()
	defer c.wb.mu.Unlock()
	q := c.wb.files[ino]
	return q != nil && q.sent < q.queued
}

// pumpLocked starts the queued writes of ino that may go now, in queue
// order: each that overlaps no earlier unfinished write, while fewer than
// maxInflight are on their way. The first that must wait holds up the ones
// behind it. Once the client is closed, writes not started are dropped
// with its error. Called with c.wb.mu held.
func (c *Client) pumpLocked(ino uint64, q *fileQueue) {
	if err := c.ctx.Err(); err != nil {
		for _, wr := range q.pending {
			if !wr.started && !wr.done {
				wr.done = true
				q.bytes -= len(wr.p)
				if q.err == nil {
					q.err = err
				}
			}
		}
		q.trimLocked()
		return
	}
	for i, wr := range q.pending {
		if q.inflight >= maxInflight {
			return
		}
		if wr.started || wr.done {
			continue
		}
		for _, prev := range q.pending[:i] {
			if !prev.done && wr.off < prev.off+int64(len(prev.p)) && prev.off < wr.off+int64(len(wr.p)) {
				return
			}
		}
		wr.started = true
		q.inflight++
		go c.send(ino, q, wr)
	}
}

// trimLocked drops the finished writes at the head of the queue, counts
// them sent and wakes the waiters.
func (q *fileQueue) trimLocked() {
	n := 0
	for n < len(q.pending) && q.pending[n].done {
		n++
	}
	if n > 0 {
		clear(q.pending[:n])
		q.pending = q.pending[n:]
		if len(q.pending) == 0 {
			q.pending = nil
		}
		q.sent += uint64(n)
	}
	q.signal()
}

// send writes one queued write of ino, records its outcome and starts the
// writes it held up.
func (c *Client) send(ino uint64, q *fileQueue, wr *queuedWrite) {
	w := &c.wb
	send := c.writeAt
	if w.send != nil {
		send = w.send
	}
	err := send(c.ctx, ino, wr.p, wr.off)
	w.mu.Lock()
	wr.done = true
	q.inflight--
	q.bytes -= len(wr.p)
	p := wr.p
	wr.p = nil // an unfinished write before it may keep wr in the queue a while
	if err != nil && q.err == nil {
		q.err = err
	}
	q.trimLocked()
	c.pumpLocked(ino, q)
	w.mu.Unlock()
	if wr.owned {
		PutStreamBuf(p)
	}
}

// waitQueue waits until the writes of ino queued before the call are sent
// (not for later ones: a steady writer does not starve a reader); with take
// it returns (and clears) the first error of the queue.
func (c *Client) waitQueue(ctx context.Context, ino uint64, take bool) error {
	w := &c.wb
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.files[ino]
	if q == nil {
		return nil
	}
	for target := q.queued; q.sent < target; {
		ch := q.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			w.mu.Lock()
			return ctx.Err()
		}
		w.mu.Lock()
	}
	if !take {
		return nil
	}
	err := q.err
	q.err = nil
	if q.idle() {
		delete(w.files, ino)
	}
	return err
}

// waitAll waits for every file's queue (Close).
func (c *Client) waitAll(ctx context.Context) {
	c.wb.mu.Lock()
	var inos []uint64
	for ino := range c.wb.files {
		inos = append(inos, ino)
	}
	c.wb.mu.Unlock()
	for _, ino := range inos {
		_ = c.waitQueue(ctx, ino, false)
	}
}
