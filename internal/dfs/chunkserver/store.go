package chunkserver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoChunk is returned for a chunk (or chunk version) this server does not hold.
var ErrNoChunk = fmt.Errorf("chunkserver: no such chunk: %w", syscall.ENOENT)

// Store holds the chunks of several data folders, like MooseFS's mfshdd.cfg.
type Store struct {
	dirs  []string
	files *openFiles // the open chunk files, see files.go

	mu     sync.Mutex
	chunks map[uint64]*chunk
	// tombs holds recently deleted chunks, whose late writes are refused
	// (see sync.go); dirsSynced the chunk folders whose names are on disk.
	tombs       map[uint64]tomb
	tombsPruned time.Time
	dirsSynced  map[string]bool
	syncHook    func(id uint64, version uint32) error
	syncs       atomic.Int64
	reads       atomic.Int64 // ReadAt calls (Reads)

	// capacity, if positive, caps the bytes the chunk files may take (a
	// fake disk size for tests and for sharing a file system); used counts
	// them.
	capacity atomic.Int64
	used     atomic.Int64

	// free lists each data folder's free files (see recycle.go); freeSeq
	// names them. dirsMade holds the chunk folders known to exist.
	free     map[string][]string
	recycles map[string]bool // data folders that keep a free list
	freeMax  int
	freeSeq  uint64
	dirsMade map[string]bool
	// emptiest caches the data folder with the most free space for a
	// second (statfs of every folder per new chunk costs more than the
	// chunk).
	emptiest   string
	emptiestAt time.Time
}

// SetOpenFiles caps the chunk files kept open while idle at n descriptors
// (0: the default, see DefaultOpenFiles).
func (s *Store) SetOpenFiles(n int) { s.files.setMax(n) }

// SetCapacity caps the space the chunk files may take at n bytes (0: the
// file systems' own limits only). Writes past it fail with ENOSPC.
func (s *Store) SetCapacity(n int64) { s.capacity.Store(n) }

// grow accounts delta more bytes of chunk files, refusing past the capacity.
func (s *Store) grow(delta int64) error {
	n := s.used.Add(delta)
	if c := s.capacity.Load(); c > 0 && delta > 0 && n > c {
		s.used.Add(-delta)
		return fmt.Errorf("chunkserver: store capacity of %d bytes reached: %w", c, syscall.ENOSPC)
	}
	return nil
}

// track hooks c into the space accounting.
func (s *Store) track(c *chunk) *chunk {
	s.used.Add(c.size)
	c.grow = s.grow
	return c
}

// forget removes c's bytes from the space accounting.
func (s *Store) untrack(c *chunk) {
	c.mu.Lock()
	s.used.Add(-c.size)
	c.mu.Unlock()
}

// OpenStore opens (creating if needed) the data folders and indexes the chunk
// files found in them.
func OpenStore(dirs []string) (*Store, error) {
	if len(dirs) == 0 {
		return nil, errors.New("chunkserver: no data folders")
	}
	s := &Store{dirs: dirs, files: newOpenFiles(0), chunks: map[uint64]*chunk{},
		free: map[string][]string{}, recycles: map[string]bool{}, freeMax: freeCap, dirsMade: map[string]bool{}}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("data folder %s: %w", d, err)
		}
		if err := s.loadFree(d); err != nil {
			s.Close()
			return nil, err
		}
		err := filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() && path == freeFiles(d) {
				return filepath.SkipDir
			}
			if err != nil || e.IsDir() || !strings.HasSuffix(path, ".chunk") {
				return err
			}
			c, err := openChunk(s.files, path)
			if err != nil {
				return err
			}
			if !nameMatches(path, c.hdr.ID) {
				// A recycled file whose new header was lost (see recycle.go).
				c.Close()
				return os.Remove(path)
			}
			if old := s.chunks[c.hdr.ID]; old != nil {
				// Two versions of one chunk: keep the newest, drop the stale one.
				if old.version() >= c.version() {
					c.Close()
					return os.Remove(path)
				}
				s.untrack(old)
				old.Close()
				os.Remove(old.path)
			}
			s.chunks[c.hdr.ID] = s.track(c)
			return nil
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("scan data folder %s: %w", d, err)
		}
	}
	return s, nil
}

// Close closes every chunk file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.chunks {
		c.Close()
	}
	s.chunks = map[uint64]*chunk{}
	return nil
}

// Space returns the total and free bytes of the data folders.
func (s *Store) Space() (total, free uint64) {
	for _, d := range s.dirs {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil {
			total += st.Blocks * uint64(st.Bsize)
			free += st.Bavail * uint64(st.Bsize)
		}
	}
	if c := s.capacity.Load(); c > 0 {
		total = min(total, uint64(c))
		free = min(free, uint64(max(0, c-s.used.Load())))
	}
	return total, free
}

// emptiestDir returns the data folder with the most free space, as found
// at most a second ago. Called with s.mu held.
func (s *Store) emptiestDir() string {
	if len(s.dirs) == 1 {
		return s.dirs[0]
	}
	if now := time.Now(); s.emptiest == "" || now.Sub(s.emptiestAt) > time.Second {
		s.emptiest, s.emptiestAt = s.statEmptiest(), now
	}
	return s.emptiest
}

func (s *Store) statEmptiest() string {
	best, bestFree := s.dirs[0], uint64(0)
	for _, d := range s.dirs {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && st.Bavail*uint64(st.Bsize) > bestFree {
			best, bestFree = d, st.Bavail*uint64(st.Bsize)
		}
	}
	return best
}

// Create makes an empty chunk. Creating a chunk that exists at the same
// version succeeds; an older version is replaced.
func (s *Store) Create(id uint64, version uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tombs, id) // the master places the chunk here (again)
	return s.createLocked(id, version)
}

func (s *Store) createLocked(id uint64, version uint32) error {
	if c := s.chunks[id]; c != nil {
		if c.version() == version {
			return nil
		}
		s.untrack(c)
		s.discardLocked(c, c.retire())
		delete(s.chunks, id)
	}
	d := s.emptiestDir()
	dir := filepath.Join(d, fmt.Sprintf("%02X", id&0xff))
	if !s.dirsMade[dir] {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create chunk %016x: %w", id, err)
		}
		s.dirsMade[dir] = true
	}
	if err := s.grow(HeaderSize); err != nil {
		return fmt.Errorf("create chunk %016x: %w", id, err)
	}
	c, err := s.newChunkLocked(d, filepath.Join(dir, fmt.Sprintf("chunk_%016X_%08X.chunk", id, version)), Header{ID: id, Version: version})
	if err != nil {
		s.grow(-HeaderSize)
		if errors.Is(err, fs.ErrNotExist) {
			delete(s.dirsMade, dir) // removed behind our back: make it again next time
		}
		return err
	}
	c.grow = s.grow
	s.chunks[id] = c
	return nil
}

// Delete removes a chunk if it is held at version (any version if 0).
func (s *Store) Delete(id uint64, version uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chunks[id]
	if c == nil || (version != 0 && c.version() != version) {
		// Not held: a write arriving later (through a location cached
		// before the delete) must not create it.
		if version == 0 {
			s.buryLocked(id, anyVersion)
		} else {
			s.buryLocked(id, version)
		}
		return fmt.Errorf("delete chunk %016x v%d: %w", id, version, ErrNoChunk)
	}
	s.buryLocked(id, c.version())
	delete(s.chunks, id)
	s.untrack(c)
	return s.discardLocked(c, c.retire())
}

// DeleteStale removes chunk id if the version held is at most version (the
// master's delete list: a newer copy is never removed by a late message).
// It reports whether a copy was removed.
func (s *Store) DeleteStale(id uint64, version uint32) (bool, error) {
	s.mu.Lock()
	c := s.chunks[id]
	if c == nil || c.version() > version {
		if c == nil {
			s.buryLocked(id, version)
		}
		s.mu.Unlock()
		return false, nil
	}
	v := c.version()
	s.mu.Unlock()
	if err := s.Delete(id, v); err != nil && !errors.Is(err, ErrNoChunk) {
		return false, err
	}
	return true, nil
}

// chunkList returns the held chunks by id, for the scrub.
func (s *Store) chunkList() map[uint64]*chunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[uint64]*chunk, len(s.chunks))
	for id, c := range s.chunks {
		out[id] = c
	}
	return out
}

// held reports whether c is still the store's copy of chunk id.
func (s *Store) held(id uint64, c *chunk) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chunks[id] == c
}

func (s *Store) get(id uint64, version uint32) (*chunk, error) {
	s.mu.Lock()
	c := s.chunks[id]
	s.mu.Unlock()
	if c == nil || c.version() != version {
		return nil, fmt.Errorf("chunk %016x v%d: %w", id, version, ErrNoChunk)
	}
	return c, nil
}

// ReadAt reads from chunk id at version.
func (s *Store) ReadAt(id uint64, version uint32, p []byte, off int64) error {
	s.reads.Add(1)
	c, err := s.get(id, version)
	if err != nil {
		return err
	}
	return c.ReadAt(p, off)
}

// Reads returns how many reads the store has served (for tests and tools).
func (s *Store) Reads() int64 { return s.reads.Load() }

// WriteAt writes to chunk id at version, creating it if absent (the first
// write of a new chunk). A write for another version than the one held, or
// for a chunk deleted at that version or a newer one, fails with ErrStale.
func (s *Store) WriteAt(id uint64, version uint32, p []byte, off int64) error {
	s.mu.Lock()
	c := s.chunks[id]
	switch {
	case c != nil && c.version() != version:
		held := c.version()
		s.mu.Unlock()
		return fmt.Errorf("write chunk %016x v%d: held at v%d: %w", id, version, held, ErrStale)
	case c == nil && s.buriedLocked(id, version):
		s.mu.Unlock()
		return fmt.Errorf("write chunk %016x v%d: deleted: %w", id, version, ErrStale)
	case c == nil:
		if err := s.createLocked(id, version); err != nil {
			s.mu.Unlock()
			return err
		}
		c = s.chunks[id]
	}
	s.mu.Unlock()
	return c.WriteAt(p, off)
}

// Chunks lists the held chunks as id -> version.
func (s *Store) Chunks() map[uint64]uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[uint64]uint32, len(s.chunks))
	for id, c := range s.chunks {
		m[id] = c.version()
	}
	return m
}

// Length returns the data length of chunk id at version.
func (s *Store) Length(id uint64, version uint32) (int64, error) {
	c, err := s.get(id, version)
	if err != nil {
		return 0, err
	}
	return c.Length()
}

// SetVersion moves chunk id from version old to version new (the master
// bumps versions when a copy is lost mid-write, so the lost copy is stale).
func (s *Store) SetVersion(id uint64, old, new uint32) error {
	c, err := s.get(id, old)
	if err != nil {
		if c2, err2 := s.get(id, new); err2 == nil && c2 != nil {
			return nil // already done
		}
		return err
	}
	path := filepath.Join(filepath.Dir(c.path), fmt.Sprintf("chunk_%016X_%08X.chunk", id, new))
	if err := c.setVersion(new, path); err != nil {
		return err
	}
	// The master records the new version once this returns and ignores
	// older copies from then on: the move must survive a power loss, or
	// every copy could come back at the old version.
	return s.Sync(id, new)
}
