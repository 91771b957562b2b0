package chunkserver

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Durability and stale writes.
//
// A write is acknowledged once every copy has write(2)n it: the data is in
// the chunkservers' page caches. fsync through a mount sends ChunkSync for
// the chunks its file wrote; Sync then fdatasyncs the chunk file (its data,
// CRC table and size) and, once after the file was created or renamed to a
// new version, fsyncs the folder holding it (and that folder's parent the
// first time), so that the copy is found after a power loss. Concurrent syncs
// of one chunk share an fdatasync: each change bumps the chunk's write
// generation, and a sync returns at once when an fdatasync that started after
// its caller's writes has finished.
//
// A deleted chunk leaves a tombstone for tombTTL: a write for a version at
// most the deleted one is refused with ESTALE instead of creating the chunk
// anew, and so is a write for a version other than the one held. A client
// writing through a location cached before another client's truncate (the
// master deletes the freed copies before it answers the truncate) or before
// a version move is refused, asks the master again and writes where the file
// now keeps its data.

// ErrStale is returned for a write to a chunk version this server does not
// hold: the copy was deleted or moved to another version.
var ErrStale = fmt.Errorf("chunkserver: stale chunk version: %w", syscall.ESTALE)

// tombTTL is how long a deleted chunk's writes are refused: far longer than
// a client caches a location (client.CacheTTL, 1 s) plus a write's time on
// the wire.
const tombTTL = 10 * time.Minute

type tomb struct {
	version uint32 // writes at this version or older are refused
	at      time.Time
}

// bury records that chunk id was deleted at version (math.MaxUint32: any
// version). Called with s.mu held.
func (s *Store) buryLocked(id uint64, version uint32) {
	now := time.Now()
	if s.tombs == nil {
		s.tombs = map[uint64]tomb{}
	}
	if t, ok := s.tombs[id]; !ok || t.version < version {
		s.tombs[id] = tomb{version: version, at: now}
	}
	if now.Sub(s.tombsPruned) > time.Minute {
		s.tombsPruned = now
		for k, t := range s.tombs {
			if now.Sub(t.at) > tombTTL {
				delete(s.tombs, k)
			}
		}
	}
}

// buriedLocked reports whether a write of chunk id at version must be
// refused because the chunk was deleted. Called with s.mu held.
func (s *Store) buriedLocked(id uint64, version uint32) bool {
	t, ok := s.tombs[id]
	return ok && version <= t.version && time.Since(t.at) <= tombTTL
}

// SetSyncHook installs fn, called before every fdatasync of a chunk file
// with the chunk's id and version; an error from fn fails the sync as if
// the disk had (tests count syncs and inject failures with it).
func (s *Store) SetSyncHook(fn func(id uint64, version uint32) error) {
	s.mu.Lock()
	s.syncHook = fn
	s.mu.Unlock()
}

// Sync makes chunk id durable: its data, CRCs and size, and its name. The
// copy must be held at version or a newer one (a version move keeps the
// data); ErrNoChunk otherwise.
func (s *Store) Sync(id uint64, version uint32) error {
	s.mu.Lock()
	c := s.chunks[id]
	hook := s.syncHook
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("sync chunk %016x v%d: %w", id, version, ErrNoChunk)
	}
	c.mu.Lock()
	held, target, named := c.hdr.Version, c.wgen, c.named
	c.mu.Unlock()
	if held < version {
		return fmt.Errorf("sync chunk %016x v%d: held at v%d: %w", id, version, held, ErrNoChunk)
	}
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	if c.sgen >= target && named {
		return nil // an fdatasync that started after the caller's writes covered them
	}
	if hook != nil {
		if err := hook(id, held); err != nil {
			return fmt.Errorf("sync chunk %016x v%d: %w", id, held, err)
		}
	}
	c.mu.Lock()
	gen, path, named := c.wgen, c.path, c.named
	f, err := c.acquire()
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sync chunk %016x v%d: %w", id, held, err)
	}
	err = fdatasync(f)
	c.release()
	if err != nil {
		return fmt.Errorf("sync chunk %016x v%d: %w", id, held, err)
	}
	if !named {
		if err := s.syncName(path); err != nil {
			return fmt.Errorf("sync chunk %016x v%d name: %w", id, held, err)
		}
		c.mu.Lock()
		if c.path == path {
			c.named = true
		}
		c.mu.Unlock()
	}
	c.sgen = gen
	s.syncs.Add(1)
	return nil
}

// Durable reports whether every change to chunk id (held at any version)
// has been fdatasynced, and its name synced.
func (s *Store) Durable(id uint64) bool {
	s.mu.Lock()
	c := s.chunks[id]
	s.mu.Unlock()
	if c == nil {
		return false
	}
	c.mu.Lock()
	target, named := c.wgen, c.named
	c.mu.Unlock()
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	return named && c.sgen >= target
}

// Syncs returns the number of chunk fdatasyncs done.
func (s *Store) Syncs() int64 { return s.syncs.Load() }

// syncName fsyncs the folder holding path and, the first time, that
// folder's parent (the data folder), where the folder itself is named.
func (s *Store) syncName(path string) error {
	dir := filepath.Dir(path)
	if err := syncDir(dir); err != nil {
		return err
	}
	s.mu.Lock()
	done := s.dirsSynced[dir]
	s.mu.Unlock()
	if done {
		return nil
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return err
	}
	s.mu.Lock()
	if s.dirsSynced == nil {
		s.dirsSynced = map[string]bool{}
	}
	s.dirsSynced[dir] = true
	s.mu.Unlock()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// fdatasync flushes f's data and the metadata needed to read it. f is
// pinned by the caller (acquire): a concurrent delete closes it only after.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("%w: %w", err, ErrNoChunk)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for {
			serr = unix.Fdatasync(int(fd))
			if serr != unix.EINTR {
				return
			}
		}
	})
	if err != nil {
		// The only failure of Control: the file was closed.
		return fmt.Errorf("%w: %w", err, ErrNoChunk)
	}
	return serr
}

// anyVersion buries every version of a chunk.
const anyVersion = math.MaxUint32
