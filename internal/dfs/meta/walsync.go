package meta

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// SyncMode says when a metadata change reaches the disk.
//
// Every change is written to pebble's write-ahead log with write(2) before
// the operation is answered, in both modes, so an answered operation survives
// the death of the master process (kill -9). The modes differ only for a
// power loss or kernel crash: SyncAlways fsyncs the log before each answer
// (concurrent operations share one fsync); SyncInterval fsyncs it in the
// background every Options.SyncInterval, so a power loss can lose at most the
// last interval of answered changes (MooseFS, which does not fsync its
// changelog per operation, loses more). See
// docs/decisions/2026-11-27-dfs-metadata-sync.md.
type SyncMode int

const (
	// SyncInterval: write before the answer, fsync in the background.
	SyncInterval SyncMode = iota
	// SyncAlways: fsync before the answer.
	SyncAlways
)

// DefaultSyncInterval bounds the power-loss window of SyncInterval.
const DefaultSyncInterval = 50 * time.Millisecond

func (m SyncMode) String() string {
	if m == SyncAlways {
		return "always"
	}
	return "interval"
}

// ParseSyncMode reads "always" or "interval".
func ParseSyncMode(s string) (SyncMode, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "interval", "":
		return SyncInterval, nil
	}
	return 0, fmt.Errorf("metadata sync mode %q: want always or interval", s)
}

// Options configure OpenWith.
type Options struct {
	Sync         SyncMode
	SyncInterval time.Duration // DefaultSyncInterval if zero (SyncInterval only)
}

// walCategory is the write category pebble gives its write-ahead log files.
const walCategory vfs.DiskWriteCategory = "pebble-wal"

// walFS hands pebble write-ahead log files whose Sync only marks them dirty:
// pebble's commit pipeline still write(2)s every record before a Sync commit
// returns (its flush loop writes the pending block, then calls Sync), and
// syncLoop fsyncs the dirty files. All other files (sstables, MANIFEST,
// directories) pass through unchanged.
type walFS struct {
	vfs.FS
	mu    sync.Mutex
	files map[*walFile]struct{}
	err   atomic.Pointer[error] // first background fsync failure, sticky
	syncs atomic.Int64          // log fsyncs done (tests)

	// The group sync of WaitDurable: callers that arrive while an fsync
	// runs wait for the next one, which they all share.
	gmu     sync.Mutex
	running bool
	next    *syncRound // the round the callers arriving now will share
}

// syncRound is one shared fsync: done is closed when it ends, err is its
// result.
type syncRound struct {
	done chan struct{}
	err  error
}

func newWalFS(inner vfs.FS) *walFS {
	return &walFS{FS: inner, files: map[*walFile]struct{}{}}
}

func (fs *walFS) wrap(f vfs.File, err error, cat vfs.DiskWriteCategory) (vfs.File, error) {
	if err != nil || cat != walCategory {
		return f, err
	}
	w := &walFile{File: f, fs: fs}
	fs.mu.Lock()
	fs.files[w] = struct{}{}
	fs.mu.Unlock()
	return w, nil
}

func (fs *walFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, cat)
	return fs.wrap(f, err, cat)
}

func (fs *walFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	return fs.wrap(f, err, cat)
}

// syncNow fsyncs every write-ahead log file written since its last fsync.
func (fs *walFS) syncNow() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for f := range fs.files {
		if err := f.syncIfDirty(); err != nil {
			fs.err.CompareAndSwap(nil, &err)
			return err
		}
	}
	return nil
}

// WaitDurable returns once every change answered before the call is on
// disk. In SyncInterval mode it starts an fsync of the write-ahead log (or,
// if one is running, which may have started before the caller's changes
// were written, waits for it and joins the next); concurrent callers share
// one fsync. In SyncAlways mode every answered change is on disk already.
// fsync on the DFS mount ends with it (the MetaSync message).
func (s *Store) WaitDurable() error {
	if s.wal == nil {
		return nil
	}
	if err := s.wal.groupSync(); err != nil {
		return fmt.Errorf("metadata sync: %w", err)
	}
	return nil
}

func (fs *walFS) groupSync() error {
	fs.gmu.Lock()
	if fs.next == nil {
		fs.next = &syncRound{done: make(chan struct{})}
	}
	r := fs.next
	if !fs.running {
		fs.running = true
		go fs.runRounds()
	}
	fs.gmu.Unlock()
	<-r.done
	return r.err
}

// runRounds runs shared fsyncs while callers wait for one.
func (fs *walFS) runRounds() {
	for {
		fs.gmu.Lock()
		r := fs.next
		fs.next = nil
		if r == nil {
			fs.running = false
			fs.gmu.Unlock()
			return
		}
		fs.gmu.Unlock()
		// The round's callers all arrived before this point: their changes
		// are in the log files, and syncNow fsyncs the dirty ones.
		r.err = fs.syncNow()
		if r.err == nil {
			r.err = fs.failed()
		}
		close(r.done)
	}
}

func (fs *walFS) failed() error {
	if p := fs.err.Load(); p != nil {
		return fmt.Errorf("background metadata fsync: %w", *p)
	}
	return nil
}

type walFile struct {
	vfs.File
	fs    *walFS
	dirty atomic.Bool
}

func (f *walFile) syncIfDirty() error {
	if !f.dirty.Swap(false) {
		return nil
	}
	f.fs.syncs.Add(1)
	return f.File.SyncData()
}

// Sync and SyncData are called by pebble after it wrote the records: the data
// is in the kernel; fsync comes from the background loop. A failed
// background fsync fails every later commit.
func (f *walFile) Sync() error {
	f.dirty.Store(true)
	return f.fs.failed()
}

func (f *walFile) SyncData() error { return f.Sync() }

// Close fsyncs what is left (pebble closes a log at rotation and shutdown).
func (f *walFile) Close() error {
	f.fs.mu.Lock()
	delete(f.fs.files, f)
	f.fs.mu.Unlock()
	err := f.File.SyncData()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	return err
}

// Unsynced reports whether some answered change may not be on disk yet (a
// write-ahead log file written since its last fsync; always false in
// SyncAlways mode).
func (s *Store) Unsynced() bool {
	if s.wal == nil {
		return false
	}
	s.wal.mu.Lock()
	defer s.wal.mu.Unlock()
	for f := range s.wal.files {
		if f.dirty.Load() {
			return true
		}
	}
	return false
}
