package meta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

var (
	// ErrCorrupt is returned for a record that cannot be decoded.
	ErrCorrupt = errors.New("meta: corrupt record")
)

// Key prefixes. Integers are big endian so that a directory's entries and a
// file's chunks are contiguous and ordered.
const (
	pInode   = 'i' // i ino -> Attr
	pDirent  = 'd' // d parent name -> ino
	pChunk   = 'c' // c ino index -> chunk id, version
	pXattr   = 'x' // x ino name -> value
	pCounter = 'n' // n name -> uint64
	pParent  = 'p' // p dir-ino -> parent ino (format 2)
	pOrphan  = 'o' // o ino -> empty: unlinked while open (format 2)
)

// FormatVersion is the metadata layout this code writes (key "nformat").
// Version 1 had no parent or orphan keys; Open upgrades it in place.
const FormatVersion = 2

func parentKey(ino uint64) []byte { return binary.BigEndian.AppendUint64([]byte{pParent}, ino) }
func orphanKey(ino uint64) []byte { return binary.BigEndian.AppendUint64([]byte{pOrphan}, ino) }

func inodeKey(ino uint64) []byte { return binary.BigEndian.AppendUint64([]byte{pInode}, ino) }
func direntKey(parent uint64, name string) []byte {
	return append(binary.BigEndian.AppendUint64([]byte{pDirent}, parent), name...)
}
func chunkKey(ino uint64, idx uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64([]byte{pChunk}, ino), idx)
}
func xattrKey(ino uint64, name string) []byte {
	return append(binary.BigEndian.AppendUint64([]byte{pXattr}, ino), name...)
}

// Store is the metadata database.
type Store struct {
	db  *pebble.DB
	now func() time.Time

	mu        sync.Mutex // serialises read-modify-write of the namespace
	nextIno   uint64
	nextChunk uint64
	inodes    uint64          // live inodes, counted at Open
	opens     map[uint64]int  // open handles per inode, from all client sessions (memory only)
	orphans   map[uint64]bool // inodes with an 'o' key (unlinked while open)

	wal      *walFS        // nil in SyncAlways mode
	stopSync chan struct{} // closes the background fsync loop
	syncDone chan struct{}
}

// Open opens (creating if needed) the metadata database in dir with the
// default options (SyncInterval).
func Open(dir string) (*Store, error) { return OpenWith(dir, Options{}) }

// OpenWith opens (creating if needed) the metadata database in dir.
func OpenWith(dir string, o Options) (*Store, error) {
	popts := &pebble.Options{Logger: quietLogger{}}
	var wal *walFS
	if o.Sync == SyncInterval {
		wal = newWalFS(vfs.Default)
		popts.FS = wal
	}
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("open metadata %s: %w", dir, err)
	}
	s := &Store{db: db, now: time.Now, opens: map[uint64]int{}, orphans: map[uint64]bool{}, wal: wal}
	var format uint64
	s.nextIno, err = s.counter("ino")
	if err == nil {
		s.nextChunk, err = s.counter("chunk")
	}
	if err == nil {
		format, err = s.counter("format")
	}
	if err == nil && format > FormatVersion {
		err = fmt.Errorf("metadata %s: format %d, this rampart reads up to %d: %w", dir, format, FormatVersion, proto.ErrVersion)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	if s.nextIno != 0 {
		if err := s.upgrade(format); err != nil {
			db.Close()
			return nil, err
		}
	}
	if s.nextIno == 0 {
		now := s.now().UnixNano()
		root := Attr{Ino: RootIno, Mode: syscall.S_IFDIR | 0o755, Nlink: 2, Goal: DefaultGoal, Atime: now, Mtime: now, Ctime: now}
		b := db.NewBatch()
		s.nextIno, s.nextChunk = RootIno+1, 1
		putAttr(b, &root)
		s.putCounters(b)
		b.Set([]byte("nformat"), binary.BigEndian.AppendUint64(nil, FormatVersion), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			db.Close()
			return nil, fmt.Errorf("create root inode: %w", err)
		}
	}
	if err := s.countInodes(); err != nil {
		db.Close()
		return nil, err
	}
	if wal != nil {
		every := o.SyncInterval
		if every <= 0 {
			every = DefaultSyncInterval
		}
		s.stopSync, s.syncDone = make(chan struct{}), make(chan struct{})
		go s.syncLoop(every)
	}
	return s, nil
}

// syncLoop fsyncs the write-ahead log every interval (SyncInterval mode).
func (s *Store) syncLoop(every time.Duration) {
	defer close(s.syncDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopSync:
			return
		case <-t.C:
			s.wal.syncNow() // a failure is kept and fails later commits
		}
	}
}

// Sync makes every change answered so far durable against power loss (a
// no-op cost in SyncAlways mode, where each commit already waited for it).
func (s *Store) Sync() error {
	if s.wal == nil {
		return nil
	}
	if err := s.wal.syncNow(); err != nil {
		return fmt.Errorf("metadata sync: %w", err)
	}
	return nil
}

// Close closes the database (fsyncing the write-ahead log).
func (s *Store) Close() error {
	if s.stopSync != nil {
		close(s.stopSync)
		<-s.syncDone
	}
	return s.db.Close()
}

func (s *Store) counter(name string) (uint64, error) {
	v, c, err := s.db.Get(append([]byte{pCounter}, name...))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read counter %s: %w", name, err)
	}
	defer c.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("counter %s of %d bytes: %w", name, len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

func (s *Store) putCounters(b *pebble.Batch) {
	b.Set([]byte("nino"), binary.BigEndian.AppendUint64(nil, s.nextIno), nil)
	b.Set([]byte("nchunk"), binary.BigEndian.AppendUint64(nil, s.nextChunk), nil)
}

func putAttr(b *pebble.Batch, a *Attr) {
	var e proto.Enc
	a.Encode(&e)
	b.Set(inodeKey(a.Ino), e.B, nil)
}

// commit applies b while s.mu is held (so later operations see it), then
// releases the lock and waits for the write-ahead log: in SyncAlways mode
// until it reaches the disk (concurrent callers wait on the same fsync:
// pebble groups them); in SyncInterval mode until pebble has written it to
// the log file (the Sync that follows the write is walFile's marker).
func (s *Store) commit(b *pebble.Batch) error {
	err := b.Commit(pebble.NoSync)
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("metadata commit: %w", err)
	}
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("metadata sync: %w", err)
	}
	return nil
}

func (s *Store) getAttr(ino uint64) (*Attr, error) {
	v, c, err := s.db.Get(inodeKey(ino))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("inode %d: %w", ino, syscall.ENOENT)
	}
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	defer c.Close()
	var a Attr
	if err := a.Decode(v); err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	return &a, nil
}

// Getattr returns an inode's attributes.
func (s *Store) Getattr(ino uint64) (*Attr, error) { return s.getAttr(ino) }

func (s *Store) lookup(parent uint64, name string) (uint64, error) {
	v, c, err := s.db.Get(direntKey(parent, name))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, fmt.Errorf("lookup %q in inode %d: %w", name, parent, syscall.ENOENT)
	}
	if err != nil {
		return 0, fmt.Errorf("lookup %q in inode %d: %w", name, parent, err)
	}
	defer c.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("entry %q in inode %d: %w", name, parent, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// Lookup finds name in directory parent.
func (s *Store) Lookup(parent uint64, name string) (*Attr, error) {
	ino, err := s.lookup(parent, name)
	if err != nil {
		return nil, err
	}
	return s.getAttr(ino)
}

// Readdir lists directory ino in name order.
func (s *Store) Readdir(ino uint64) ([]Dirent, error) {
	lo := direntKey(ino, "")
	hi := direntKey(ino+1, "")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("readdir inode %d: %w", ino, err)
	}
	defer it.Close()
	var out []Dirent
	for it.First(); it.Valid(); it.Next() {
		v := it.Value()
		if len(v) != 8 {
			return nil, fmt.Errorf("readdir inode %d: %w", ino, ErrCorrupt)
		}
		out = append(out, Dirent{Name: string(it.Key()[len(lo):]), Ino: binary.BigEndian.Uint64(v)})
	}
	return out, nil
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("meta: pebble fatal: "+format, args...))
}
