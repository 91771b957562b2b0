package meta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/cockroachdb/pebble/v2"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// maxDepth bounds a walk up the parent pointers, so a corrupt loop cannot
// hang the master.
const maxDepth = 1 << 16

// upgrade brings an older layout to FormatVersion and loads the orphans
// (inodes unlinked while open) left by the previous run. No handle survives
// a master restart, but a client that reconnects opens its files again: the
// master deletes the orphans nobody reopened after a grace period
// (PurgeOrphans).
func (s *Store) upgrade(format uint64) error {
	b := s.db.NewBatch()
	if format < 2 {
		// Version 2 adds the parent pointer of every directory.
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pDirent}, UpperBound: []byte{pDirent + 1}})
		if err != nil {
			return fmt.Errorf("upgrade metadata: %w", err)
		}
		for it.First(); it.Valid(); it.Next() {
			k, v := it.Key(), it.Value()
			if len(k) < 9 || len(v) != 8 {
				it.Close()
				return fmt.Errorf("upgrade metadata: entry key %x: %w", k, ErrCorrupt)
			}
			child := binary.BigEndian.Uint64(v)
			if a, err := s.getAttr(child); err == nil && a.IsDir() {
				b.Set(parentKey(child), append([]byte(nil), k[1:9]...), nil)
			}
		}
		if err := it.Close(); err != nil {
			return fmt.Errorf("upgrade metadata: %w", err)
		}
		b.Set([]byte("nformat"), binary.BigEndian.AppendUint64(nil, FormatVersion), nil)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pOrphan}, UpperBound: []byte{pOrphan + 1}})
	if err != nil {
		return fmt.Errorf("scan orphans: %w", err)
	}
	var orphans []uint64
	for it.First(); it.Valid(); it.Next() {
		if k := it.Key(); len(k) == 9 {
			orphans = append(orphans, binary.BigEndian.Uint64(k[1:]))
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("scan orphans: %w", err)
	}
	for _, ino := range orphans {
		s.orphans[ino] = true
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("upgrade metadata: %w", err)
	}
	return nil
}

// countInodes counts the live inodes once at Open; mutations keep the count.
func (s *Store) countInodes() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pInode}, UpperBound: []byte{pInode + 1}})
	if err != nil {
		return fmt.Errorf("count inodes: %w", err)
	}
	var n uint64
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	s.inodes = n
	return it.Close()
}

// Inodes returns the number of live inodes (files, directories, links and
// unlinked-but-open files).
func (s *Store) Inodes() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inodes
}

func (s *Store) parent(dir uint64) (uint64, error) {
	v, c, err := s.db.Get(parentKey(dir))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, fmt.Errorf("parent of directory %d: %w", dir, ErrCorrupt)
	}
	if err != nil {
		return 0, fmt.Errorf("parent of directory %d: %w", dir, err)
	}
	defer c.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("parent of directory %d: %w", dir, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// within reports whether directory dir is anc or lies below it.
func (s *Store) within(dir, anc uint64) (bool, error) {
	for i := 0; i < maxDepth; i++ {
		if dir == anc {
			return true, nil
		}
		if dir == RootIno {
			return false, nil
		}
		var err error
		if dir, err = s.parent(dir); err != nil {
			return false, err
		}
	}
	return false, fmt.Errorf("directory %d is more than %d levels deep: %w", dir, maxDepth, ErrCorrupt)
}

// Rename flags (the Linux renameat2 values).
const (
	RenameNoReplace = proto.RenameNoReplace
	RenameExchange  = proto.RenameExchange
)

// Rename moves oldName in oldParent to newName in newParent, as rename(2)
// and renameat2(2): an existing target of a compatible type is replaced (a
// directory only by a directory, and only when empty), RenameNoReplace fails
// with EEXIST instead, RenameExchange swaps the two entries atomically, and
// a directory never moves into its own subtree (EINVAL). The replaced inode's
// chunks are returned when it is deleted; a replaced file that is still open
// stays as an orphan until its last handle is released.
func (s *Store) Rename(oldParent uint64, oldName string, newParent uint64, newName string, flags uint32) ([]Chunk, error) {
	if flags&^(RenameNoReplace|RenameExchange) != 0 || flags == RenameNoReplace|RenameExchange {
		return nil, fmt.Errorf("rename %q flags %#x: %w", oldName, flags, syscall.EINVAL)
	}
	if err := checkName(newName); err != nil {
		return nil, err
	}
	if err := checkName(oldName); err != nil {
		return nil, err
	}
	s.mu.Lock()
	fail := func(err error) ([]Chunk, error) {
		s.mu.Unlock()
		return nil, err
	}
	ino, err := s.lookup(oldParent, oldName)
	if err != nil {
		return fail(err)
	}
	a, err := s.getAttr(ino)
	if err != nil {
		return fail(err)
	}
	op, err := s.getAttr(oldParent)
	if err != nil {
		return fail(err)
	}
	np := op
	if newParent != oldParent {
		if np, err = s.getAttr(newParent); err != nil {
			return fail(err)
		}
		if !np.IsDir() {
			return fail(fmt.Errorf("rename into inode %d: %w", newParent, syscall.ENOTDIR))
		}
	}
	tino, terr := s.lookup(newParent, newName)
	exists := terr == nil
	if terr != nil && !errors.Is(terr, syscall.ENOENT) {
		return fail(terr)
	}
	switch {
	case flags&RenameExchange != 0 && !exists:
		return fail(fmt.Errorf("exchange %q with %q: %w", oldName, newName, syscall.ENOENT))
	case flags&RenameNoReplace != 0 && exists:
		return fail(fmt.Errorf("rename %q over %q: %w", oldName, newName, syscall.EEXIST))
	case exists && tino == ino:
		// Two names of one inode: rename(2) does nothing.
		s.mu.Unlock()
		return nil, nil
	}
	if a.IsDir() && newParent != oldParent {
		if in, err := s.within(newParent, ino); err != nil {
			return fail(err)
		} else if in {
			return fail(fmt.Errorf("rename directory %q into its own subtree: %w", oldName, syscall.EINVAL))
		}
	}
	var t *Attr
	if exists {
		if t, err = s.getAttr(tino); err != nil {
			return fail(err)
		}
	}
	now := s.now().UnixNano()
	b := s.db.NewBatch()
	var freed []Chunk
	if flags&RenameExchange != 0 {
		if t.IsDir() && newParent != oldParent {
			if in, err := s.within(oldParent, tino); err != nil {
				return fail(err)
			} else if in {
				return fail(fmt.Errorf("exchange directory %q into its own subtree: %w", newName, syscall.EINVAL))
			}
		}
		b.Set(direntKey(oldParent, oldName), binary.BigEndian.AppendUint64(nil, tino), nil)
		if t.IsDir() && newParent != oldParent {
			b.Set(parentKey(tino), binary.BigEndian.AppendUint64(nil, oldParent), nil)
			np.Nlink--
			op.Nlink++
		}
		t.Ctime = now
		putAttr(b, t)
	} else {
		if exists {
			switch {
			case a.IsDir() && !t.IsDir():
				err = fmt.Errorf("rename directory %q over %q: %w", oldName, newName, syscall.ENOTDIR)
			case !a.IsDir() && t.IsDir():
				err = fmt.Errorf("rename %q over directory %q: %w", oldName, newName, syscall.EISDIR)
			case t.IsDir():
				if ents, rerr := s.Readdir(tino); rerr != nil {
					err = rerr
				} else if len(ents) > 0 {
					err = fmt.Errorf("rename over directory %q: %w", newName, syscall.ENOTEMPTY)
				}
			}
			if err != nil {
				b.Close()
				return fail(err)
			}
			t.Nlink--
			if t.IsDir() {
				np.Nlink--
			}
			if freed, err = s.dropLink(b, t, now); err != nil {
				b.Close()
				return fail(err)
			}
		}
		b.Delete(direntKey(oldParent, oldName), nil)
	}
	b.Set(direntKey(newParent, newName), binary.BigEndian.AppendUint64(nil, ino), nil)
	if a.IsDir() && oldParent != newParent {
		b.Set(parentKey(ino), binary.BigEndian.AppendUint64(nil, newParent), nil)
		op.Nlink--
		np.Nlink++
	}
	op.Mtime, op.Ctime = now, now
	np.Mtime, np.Ctime = now, now
	a.Ctime = now
	putAttr(b, a)
	putAttr(b, op)
	if oldParent != newParent {
		putAttr(b, np)
	}
	if err := s.commit(b); err != nil {
		return nil, fmt.Errorf("rename %q to %q: %w", oldName, newName, err)
	}
	return freed, nil
}

// OpenInode counts an open handle on ino for a client session and returns
// its attributes. While handles remain, unlinking the last name keeps the
// inode (an orphan) so the handles can still read, write and fstat it.
func (s *Store) OpenInode(ino uint64) (*Attr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.getAttr(ino)
	if err != nil {
		return nil, err
	}
	s.opens[ino]++
	return a, nil
}

// ReleaseInode drops one open handle on ino. When the last handle of an
// orphan goes, the inode is deleted and its chunks returned.
func (s *Store) ReleaseInode(ino uint64) ([]Chunk, error) {
	s.mu.Lock()
	if s.opens[ino] > 1 {
		s.opens[ino]--
		s.mu.Unlock()
		return nil, nil
	}
	delete(s.opens, ino)
	if !s.orphans[ino] {
		s.mu.Unlock()
		return nil, nil
	}
	if a, err := s.getAttr(ino); err != nil || a.Nlink != 0 {
		// The unlink that made it an orphan did not commit.
		delete(s.orphans, ino)
		s.mu.Unlock()
		return nil, nil
	}
	b := s.db.NewBatch()
	freed, err := s.deleteInode(b, ino)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if err := s.commit(b); err != nil {
		return nil, fmt.Errorf("delete orphan inode %d: %w", ino, err)
	}
	return freed, nil
}

// PurgeOrphans deletes the orphans that nobody holds open (those a previous
// run left and no client reopened) and returns their chunks.
func (s *Store) PurgeOrphans() ([]Chunk, error) {
	s.mu.Lock()
	b := s.db.NewBatch()
	var freed []Chunk
	n := 0
	for ino := range s.orphans {
		if s.opens[ino] > 0 {
			continue
		}
		cs, err := s.deleteInode(b, ino)
		if err != nil {
			b.Close()
			s.mu.Unlock()
			return nil, err
		}
		freed = append(freed, cs...)
		n++
	}
	if n == 0 {
		b.Close()
		s.mu.Unlock()
		return nil, nil
	}
	if err := s.commit(b); err != nil {
		return nil, fmt.Errorf("delete %d orphans: %w", n, err)
	}
	return freed, nil
}

// OpenCount returns the open handles on ino (for tests and tools).
func (s *Store) OpenCount(ino uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opens[ino]
}
