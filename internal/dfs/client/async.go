package client

import (
	"context"
	"errors"
	"sync"
)

// Write-back: WriteAtAsync queues a write and returns at once; a worker per
// file sends the queue to the chunkservers, the writes of one batch that do
// not overlap each other in parallel (so many small random writes are in
// flight together), overlapping ones in their order. Flush (and Sync) wait
// until the file's queue is empty and return the first error since the last
// Flush or Sync, as close and fsync report write-back errors. Every call that reads or
// changes the file's data or size here (ReadAt, Getattr, Setattr, WriteAt)
// first waits for its queue, so this client always sees its own writes.

// MaxQueued bounds the bytes queued per file; a writer past it waits.
const MaxQueued = 32 << 20

type queuedWrite struct {
	p   []byte
	off int64
}

type fileQueue struct {
	pending []queuedWrite
	bytes   int
	running bool
	queued  uint64 // writes ever queued
	sent    uint64 // writes ever sent (a prefix of the queue)
	err     error
	changed chan struct{} // closed and replaced whenever the queue shrinks or stops
}

type writeBack struct {
	mu    sync.Mutex
	files map[uint64]*fileQueue
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
	q.pending = append(q.pending, queuedWrite{p: append([]byte(nil), p...), off: off})
	q.bytes += len(p)
	q.queued++
	if !q.running {
		q.running = true
		go c.drain(ino, q)
	}
	w.mu.Unlock()
	// After queueing: no read-ahead piece starts while the write is queued,
	// and none fetched before it survives.
	c.ra.drop(ino)
	return nil
}

// writesQueued reports whether writes of ino are queued or on their way.
func (c *Client) writesQueued(ino uint64) bool {
	c.wb.mu.Lock()
	defer c.wb.mu.Unlock()
	q := c.wb.files[ino]
	return q != nil && q.sent < q.queued
}

// drain sends ino's queue until it is empty.
func (c *Client) drain(ino uint64, q *fileQueue) {
	w := &c.wb
	for {
		w.mu.Lock()
		if len(q.pending) == 0 || c.ctx.Err() != nil {
			q.running = false
			if c.ctx.Err() != nil && len(q.pending) > 0 && q.err == nil {
				q.err = c.ctx.Err()
			}
			q.pending, q.bytes, q.sent = nil, 0, q.queued
			q.signal()
			w.mu.Unlock()
			return
		}
		batch := nonOverlapping(q.pending)
		w.mu.Unlock()

		errs := make([]error, len(batch))
		var wg sync.WaitGroup
		for i, b := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = c.writeAt(c.ctx, ino, b.p, b.off)
			}()
		}
		wg.Wait()

		w.mu.Lock()
		n := 0
		for _, b := range batch {
			n += len(b.p)
		}
		q.pending = q.pending[len(batch):]
		q.bytes -= n
		q.sent += uint64(len(batch))
		if err := errors.Join(errs...); err != nil && q.err == nil {
			q.err = err
		}
		q.signal()
		w.mu.Unlock()
	}
}

// nonOverlapping returns the longest prefix of ws whose writes do not
// overlap each other (at least one write).
func nonOverlapping(ws []queuedWrite) []queuedWrite {
	const maxBatch = 64
	for i := 1; i < len(ws) && i < maxBatch; i++ {
		for _, prev := range ws[:i] {
			if ws[i].off < prev.off+int64(len(prev.p)) && prev.off < ws[i].off+int64(len(ws[i].p)) {
				return ws[:i]
			}
		}
	}
	return ws[:min(len(ws), maxBatch)]
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
	if !q.running {
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
