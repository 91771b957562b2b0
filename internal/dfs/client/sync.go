package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// fsync. A write is acknowledged when every copy of its chunk holds it in
// its page cache; Sync makes a file's writes durable: every copy of every
// chunk the file wrote since its last Sync fdatasyncs the chunk file
// (ChunkSync, sent to all copies in parallel), and the master's metadata
// log, which holds the file's size and mtime, reaches the disk (MetaSync).
// See docs/decisions/2026-12-03-dfs-fsync.md.

// dirtyChunks records, per file, the chunks written since the file's last
// Sync and the copies each write went to. A file nobody syncs is synced in
// the background once dirtyExpire passed since its last write (see sweep),
// so the record stays as small as the writes of the last minute, and data
// reaches the disks in about the time a local file system's write-back
// takes.
type dirtyChunks struct {
	mu       sync.Mutex
	files    map[uint64]map[uint32]*proto.ChunkLoc
	last     map[uint64]time.Time // ino -> last write
	sweeping bool
	// inflight holds the files the sweep is syncing; closed when done (a
	// Sync of the file waits for it).
	inflight map[uint64]chan struct{}
	// expire and every replace dirtyExpire and sweepEvery if set (tests).
	expire, every time.Duration
}

// dirtyExpire is how long after its last write a file's chunks wait for an
// fsync before the client syncs them in the background; sweepEvery is how
// often it looks.
const (
	dirtyExpire = 30 * time.Second
	sweepEvery  = 10 * time.Second
)

// wrote records that chunk idx of ino was written to loc's copies; it
// reports whether the background sweep must be started.
func (d *dirtyChunks) wrote(ino uint64, idx uint32, loc *proto.ChunkLoc) (startSweep bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.files == nil {
		d.files = map[uint64]map[uint32]*proto.ChunkLoc{}
		d.last = map[uint64]time.Time{}
	}
	f := d.files[ino]
	if f == nil {
		f = map[uint32]*proto.ChunkLoc{}
		d.files[ino] = f
	}
	d.last[ino] = time.Now()
	if !d.sweeping {
		d.sweeping = true
		startSweep = true
	}
	if old := f[idx]; old != nil && old.ID == loc.ID && old.Version == loc.Version && sameServers(old.Servers, loc.Servers) {
		return startSweep
	}
	if old := f[idx]; old != nil && old.ID == loc.ID {
		// Written to another set of copies (a version move, a new copy):
		// all of them must sync.
		merged := *loc
		merged.Version = min(old.Version, loc.Version)
		merged.Servers = union(old.Servers, loc.Servers)
		f[idx] = &merged
		return startSweep
	}
	f[idx] = loc
	return startSweep
}

// take returns and forgets the chunks ino wrote since its last Sync.
func (d *dirtyChunks) take(ino uint64) map[uint32]*proto.ChunkLoc {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.files[ino]
	delete(d.files, ino)
	delete(d.last, ino)
	return f
}

// putBack returns chunks that failed to sync to the set, for the next Sync.
func (d *dirtyChunks) putBack(ino uint64, failed map[uint32]*proto.ChunkLoc) {
	for idx, loc := range failed {
		d.wrote(ino, idx, loc) // the sweep runs: the set is not empty
	}
}

// expired takes the files whose last write is older than dirtyExpire; done
// is true (and the sweep must stop) when no file is left.
func (d *dirtyChunks) expired(now time.Time) (out map[uint64]map[uint32]*proto.ChunkLoc, done bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	expire := dirtyExpire
	if d.expire > 0 {
		expire = d.expire
	}
	for ino, t := range d.last {
		if now.Sub(t) >= expire {
			if out == nil {
				out = map[uint64]map[uint32]*proto.ChunkLoc{}
			}
			out[ino] = d.files[ino]
			delete(d.files, ino)
			delete(d.last, ino)
			if d.inflight == nil {
				d.inflight = map[uint64]chan struct{}{}
			}
			d.inflight[ino] = make(chan struct{})
		}
	}
	if len(d.files) == 0 && len(out) == 0 {
		d.sweeping = false
		return nil, true
	}
	return out, false
}

// swept ends the sweep's sync of ino.
func (d *dirtyChunks) swept(ino uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	close(d.inflight[ino])
	delete(d.inflight, ino)
}

// awaitSweep waits until the sweep is done with ino.
func (d *dirtyChunks) awaitSweep(ctx context.Context, ino uint64) error {
	d.mu.Lock()
	ch := d.inflight[ino]
	d.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// noteWrite records a chunk write for Sync (called by writeAt).
func (c *Client) noteWrite(ino uint64, idx uint32, loc *proto.ChunkLoc) {
	if c.dirty.wrote(ino, idx, loc) {
		go c.sweep()
	}
}

// sweep syncs, in the background, the chunks of files not synced within
// dirtyExpire of their last write (ChunkSync only: the master's log is
// fsynced by its own loop), while any file has unsynced chunks.
func (c *Client) sweep() {
	every := sweepEvery
	c.dirty.mu.Lock()
	if c.dirty.every > 0 {
		every = c.dirty.every
	}
	c.dirty.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		files, done := c.dirty.expired(time.Now())
		if done {
			return
		}
		// One ChunkSync per server for all of them; failed chunks go back
		// for the next sweep or Sync.
		failed, _ := c.syncFiles(c.ctx, files)
		for ino := range files {
			if len(failed[ino]) > 0 {
				c.dirty.putBack(ino, failed[ino])
			}
			c.dirty.swept(ino)
		}
	}
}

func sameServers(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, s := range b {
		found := false
		for _, t := range a {
			found = found || s == t
		}
		if !found {
			out = append(out, s)
		}
	}
	return out
}

// Sync makes ino's writes durable, like fsync(2): it waits for the queued
// writes (WriteAtAsync) and records their mtime (as Flush does), then has
// every copy of every chunk the file wrote since its last Sync fdatasync it,
// and the master put its metadata log on disk, both in parallel. It returns
// the first error of a queued write since the last Flush or Sync, or EIO if
// a copy could not sync (the chunks stay marked for the next Sync).
func (c *Client) Sync(ctx context.Context, ino uint64) error {
	if err := c.Flush(ctx, ino); err != nil {
		return err
	}
	if err := c.dirty.awaitSweep(ctx, ino); err != nil {
		return err
	}
	chunks := c.dirty.take(ino)
	var metaErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, metaErr = c.master.Call(ctx, proto.MsgMetaSync, nil)
	}()
	failed, err := c.syncChunks(ctx, ino, chunks)
	<-done
	if len(failed) > 0 {
		c.dirty.putBack(ino, failed)
	}
	if err != nil {
		return err
	}
	if metaErr != nil {
		return fmt.Errorf("fsync inode %d: metadata: %w", ino, metaErr)
	}
	return nil
}

// fileChunks is the chunks of several files to sync: ino -> index -> copies.
type fileChunks = map[uint64]map[uint32]*proto.ChunkLoc

type syncKey struct {
	ino uint64
	idx uint32
}

type syncItem struct {
	key syncKey
	ref proto.ChunkRef
}

// syncChunks makes chunks of ino durable (see syncFiles).
func (c *Client) syncChunks(ctx context.Context, ino uint64, chunks map[uint32]*proto.ChunkLoc) (map[uint32]*proto.ChunkLoc, error) {
	if len(chunks) == 0 {
		return nil, nil
	}
	failed, err := c.syncFiles(ctx, fileChunks{ino: chunks})
	return failed[ino], err
}

// syncFiles sends one ChunkSync to each server holding any of the chunks
// (of one file, or of every file the sweep syncs at once, so that the
// server's fdatasyncs run together) and returns the chunks some copy failed
// to sync after a second try on the copies the master lists now.
func (c *Client) syncFiles(ctx context.Context, files fileChunks) (fileChunks, error) {
	byServer := map[string][]syncItem{}
	for ino, chunks := range files {
		for idx, loc := range chunks {
			for _, s := range loc.Servers {
				byServer[s] = append(byServer[s], syncItem{syncKey{ino, idx}, proto.ChunkRef{ID: loc.ID, Version: loc.Version}})
			}
		}
	}
	var mu sync.Mutex
	retry := map[syncKey]bool{}
	var wg sync.WaitGroup
	for addr, items := range byServer {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bad := c.syncOn(ctx, addr, items)
			mu.Lock()
			for _, k := range bad {
				retry[k] = true
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(retry) == 0 {
		return nil, nil
	}
	// A copy failed (a lost chunkserver, a version move, a chunk freed by a
	// truncate): sync the copies the master lists now.
	failed := fileChunks{}
	var errs []error
	for k := range retry {
		loc := files[k.ino][k.idx]
		if err := c.resync(ctx, k.ino, k.idx, loc); err != nil {
			if failed[k.ino] == nil {
				failed[k.ino] = map[uint32]*proto.ChunkLoc{}
			}
			failed[k.ino][k.idx] = loc
			errs = append(errs, fmt.Errorf("inode %d: %w", k.ino, err))
		}
	}
	if len(errs) > 0 {
		return failed, fmt.Errorf("fsync: %w: %w", errors.Join(errs...), syscall.EIO)
	}
	return nil, nil
}

// syncOn sends ChunkSync for items to addr in pieces of at most
// proto.MaxSyncChunks and returns the chunks that did not sync.
func (c *Client) syncOn(ctx context.Context, addr string, items []syncItem) []syncKey {
	var bad []syncKey
	for len(items) > 0 {
		n := min(len(items), proto.MaxSyncChunks)
		part := items[:n]
		items = items[n:]
		m := proto.ChunkSync{Chunks: make([]proto.ChunkRef, n)}
		for i, it := range part {
			m.Chunks[i] = it.ref
		}
		var e proto.Enc
		m.Encode(&e)
		p, err := c.peer(ctx, addr)
		var b []byte
		if err == nil {
			b, err = p.Call(ctx, proto.MsgChunkSync, e.B)
		}
		var r proto.ChunkSyncReply
		if err == nil {
			err = r.Decode(b)
		}
		if err == nil && len(r.Errnos) != n {
			err = fmt.Errorf("ChunkSync reply with %d results for %d chunks: %w", len(r.Errnos), n, proto.ErrBadField)
		}
		for i, it := range part {
			if err != nil || r.Errnos[i] != 0 {
				bad = append(bad, it.key)
			}
		}
	}
	return bad
}

// resync makes chunk idx of ino durable on the copies the master lists now,
// after a copy of loc failed. A chunk the file no longer has (freed by a
// truncate, or the file is gone) has nothing left to make durable.
func (c *Client) resync(ctx context.Context, ino uint64, idx uint32, loc *proto.ChunkLoc) error {
	cur, err := c.chunkLoc(ctx, ino, idx, false)
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("chunk %d: %w", idx, err)
	}
	if cur.ID != loc.ID {
		return nil
	}
	if len(cur.Servers) == 0 {
		return fmt.Errorf("chunk %016x has no live copy", loc.ID)
	}
	items := []syncItem{{syncKey{ino, idx}, proto.ChunkRef{ID: loc.ID, Version: min(loc.Version, cur.Version)}}}
	var errs []error
	for _, addr := range cur.Servers {
		if bad := c.syncOn(ctx, addr, items); len(bad) > 0 {
			errs = append(errs, fmt.Errorf("chunk %016x on %s did not sync", loc.ID, addr))
		}
	}
	return errors.Join(errs...)
}
