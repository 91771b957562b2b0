package meta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/cockroachdb/pebble/v2"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

func encodeChunk(c Chunk) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, c.ID), c.Version)
}

func decodeChunk(v []byte) (Chunk, error) {
	if len(v) != 12 {
		return Chunk{}, fmt.Errorf("chunk record of %d bytes: %w", len(v), ErrCorrupt)
	}
	return Chunk{ID: binary.BigEndian.Uint64(v), Version: binary.BigEndian.Uint32(v[8:])}, nil
}

// Chunks returns file ino's chunk map indexed by chunk index; holes have ID 0.
func (s *Store) Chunks(ino uint64) ([]Chunk, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: chunkKey(ino, 0), UpperBound: chunkKey(ino+1, 0)})
	if err != nil {
		return nil, fmt.Errorf("chunk map of inode %d: %w", ino, err)
	}
	defer it.Close()
	var out []Chunk
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		idx := binary.BigEndian.Uint32(k[9:])
		c, err := decodeChunk(it.Value())
		if err != nil {
			return nil, fmt.Errorf("chunk map of inode %d index %d: %w", ino, idx, err)
		}
		for uint32(len(out)) < idx {
			out = append(out, Chunk{})
		}
		out = append(out, c)
	}
	return out, nil
}

// Chunk returns chunk idx of file ino, or a zero Chunk for a hole.
func (s *Store) Chunk(ino uint64, idx uint32) (Chunk, error) {
	v, c, err := s.db.Get(chunkKey(ino, idx))
	if errors.Is(err, pebble.ErrNotFound) {
		return Chunk{}, nil
	}
	if err != nil {
		return Chunk{}, fmt.Errorf("chunk %d of inode %d: %w", idx, ino, err)
	}
	defer c.Close()
	return decodeChunk(v)
}

// AllocChunk returns chunk idx of file ino for writing. A hole gets a new
// chunk id at version 1 (created is true: the caller places its copies).
func (s *Store) AllocChunk(ino uint64, idx uint32) (c Chunk, created bool, err error) {
	s.mu.Lock()
	a, err := s.getAttr(ino)
	if err == nil && !a.IsRegular() {
		err = fmt.Errorf("write to inode %d: %w", ino, syscall.EINVAL)
	}
	if err == nil {
		c, err = s.Chunk(ino, idx)
	}
	if err != nil || c.ID != 0 {
		s.mu.Unlock()
		return c, false, err
	}
	c = Chunk{ID: s.nextChunk, Version: 1}
	s.nextChunk++
	b := s.db.NewBatch()
	b.Set(chunkKey(ino, idx), encodeChunk(c), nil)
	s.putCounters(b)
	if err := s.commit(b); err != nil {
		return Chunk{}, false, fmt.Errorf("allocate chunk %d of inode %d: %w", idx, ino, err)
	}
	return c, true, nil
}

// SetChunkVersion records a new version of chunk idx of file ino (after the
// master bumped it because a copy was lost during a write).
func (s *Store) SetChunkVersion(ino uint64, idx uint32, c Chunk) error {
	s.mu.Lock()
	b := s.db.NewBatch()
	b.Set(chunkKey(ino, idx), encodeChunk(c), nil)
	return s.commit(b)
}

// SetSize records a larger size after a write (never shrinks; use Setattr).
func (s *Store) SetSize(ino uint64, size uint64, mtime int64) (*Attr, error) {
	s.mu.Lock()
	a, err := s.getAttr(ino)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if size > a.Size {
		a.Size = size
	}
	a.Mtime, a.Ctime = mtime, mtime
	b := s.db.NewBatch()
	putAttr(b, a)
	return a, s.commit(b)
}

// BindChunk records a write's end and mtime as SetSize does and, in the
// same commit, makes c chunk idx of file ino if that slot is a hole and
// fresh is true (c is a chunk id the caller reserved with
// CreateOpenReserve and offered to the writer). If the slot already holds
// c (a retried bind) only the size and mtime change. Otherwise it fails
// with ESTALE and changes nothing: the writer must write its data again to
// the file's chunk.
func (s *Store) BindChunk(ino uint64, idx uint32, c Chunk, size uint64, mtime int64, fresh bool) (*Attr, error) {
	s.mu.Lock()
	a, err := s.getAttr(ino)
	if err == nil && !a.IsRegular() {
		err = fmt.Errorf("bind chunk %016x to inode %d: %w", c.ID, ino, syscall.EINVAL)
	}
	var cur Chunk
	if err == nil {
		cur, err = s.Chunk(ino, idx)
	}
	if err == nil && cur.ID != c.ID && (cur.ID != 0 || !fresh) {
		err = fmt.Errorf("bind chunk %016x as chunk %d of inode %d, which holds chunk %016x: %w", c.ID, idx, ino, cur.ID, syscall.ESTALE)
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	b := s.db.NewBatch()
	if cur.ID == 0 {
		b.Set(chunkKey(ino, idx), encodeChunk(c), nil)
	}
	if size > a.Size {
		a.Size = size
	}
	a.Mtime, a.Ctime = mtime, mtime
	putAttr(b, a)
	if err := s.commit(b); err != nil {
		return nil, fmt.Errorf("bind chunk %016x to inode %d: %w", c.ID, ino, err)
	}
	return a, nil
}

// Extended attribute limits, as Linux's XATTR_NAME_MAX and XATTR_SIZE_MAX.
const (
	MaxXattrName  = 255
	MaxXattrValue = 64 << 10
)

// SetXattr sets an extended attribute. flags may hold proto.XattrCreate
// (EEXIST if it exists) or proto.XattrReplace (ENODATA if it does not).
func (s *Store) SetXattr(ino uint64, name string, value []byte, flags uint32) error {
	switch {
	case name == "" || len(name) > MaxXattrName:
		return fmt.Errorf("xattr name of %d bytes on inode %d: %w", len(name), ino, syscall.ERANGE)
	case len(value) > MaxXattrValue:
		return fmt.Errorf("xattr %q of %d bytes on inode %d: %w", name, len(value), ino, syscall.E2BIG)
	case flags&^(proto.XattrCreate|proto.XattrReplace) != 0 || flags == proto.XattrCreate|proto.XattrReplace:
		return fmt.Errorf("xattr %q flags %#x: %w", name, flags, syscall.EINVAL)
	}
	s.mu.Lock()
	a, err := s.getAttr(ino)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if flags != 0 {
		_, c, err := s.db.Get(xattrKey(ino, name))
		exists := err == nil
		if exists {
			c.Close()
		} else if !errors.Is(err, pebble.ErrNotFound) {
			s.mu.Unlock()
			return fmt.Errorf("xattr %q of inode %d: %w", name, ino, err)
		}
		if exists && flags == proto.XattrCreate {
			s.mu.Unlock()
			return fmt.Errorf("xattr %q of inode %d: %w", name, ino, syscall.EEXIST)
		}
		if !exists && flags == proto.XattrReplace {
			s.mu.Unlock()
			return fmt.Errorf("xattr %q of inode %d: %w", name, ino, syscall.ENODATA)
		}
	}
	a.Ctime = s.now().UnixNano()
	b := s.db.NewBatch()
	b.Set(xattrKey(ino, name), value, nil)
	putAttr(b, a)
	return s.commit(b)
}

// GetXattr reads an extended attribute (ENODATA if absent).
func (s *Store) GetXattr(ino uint64, name string) ([]byte, error) {
	v, c, err := s.db.Get(xattrKey(ino, name))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("xattr %q of inode %d: %w", name, ino, syscall.ENODATA)
	}
	if err != nil {
		return nil, fmt.Errorf("xattr %q of inode %d: %w", name, ino, err)
	}
	defer c.Close()
	return append([]byte(nil), v...), nil
}

// ListXattr lists the extended attribute names of ino.
func (s *Store) ListXattr(ino uint64) ([]string, error) {
	lo := xattrKey(ino, "")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: xattrKey(ino+1, "")})
	if err != nil {
		return nil, fmt.Errorf("xattrs of inode %d: %w", ino, err)
	}
	defer it.Close()
	var out []string
	for it.First(); it.Valid(); it.Next() {
		out = append(out, string(it.Key()[len(lo):]))
	}
	return out, nil
}

// RemoveXattr deletes an extended attribute (ENODATA if absent).
func (s *Store) RemoveXattr(ino uint64, name string) error {
	s.mu.Lock()
	_, c, err := s.db.Get(xattrKey(ino, name))
	if err != nil {
		s.mu.Unlock()
		if errors.Is(err, pebble.ErrNotFound) {
			return fmt.Errorf("xattr %q of inode %d: %w", name, ino, syscall.ENODATA)
		}
		return fmt.Errorf("xattr %q of inode %d: %w", name, ino, err)
	}
	c.Close()
	b := s.db.NewBatch()
	b.Delete(xattrKey(ino, name), nil)
	if a, err := s.getAttr(ino); err == nil {
		a.Ctime = s.now().UnixNano()
		putAttr(b, a)
	}
	return s.commit(b)
}

// ForEachChunk calls fn for every chunk of every file, with the file's goal.
func (s *Store) ForEachChunk(fn func(ino uint64, idx uint32, goal uint8, c Chunk)) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pChunk}, UpperBound: []byte{pChunk + 1}})
	if err != nil {
		return fmt.Errorf("scan chunk map: %w", err)
	}
	defer it.Close()
	var lastIno uint64
	var goal uint8
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 13 {
			return fmt.Errorf("chunk map key %x: %w", k, ErrCorrupt)
		}
		ino, idx := binary.BigEndian.Uint64(k[1:]), binary.BigEndian.Uint32(k[9:])
		c, err := decodeChunk(it.Value())
		if err != nil {
			return fmt.Errorf("chunk %d of inode %d: %w", idx, ino, err)
		}
		if ino != lastIno {
			lastIno, goal = ino, DefaultGoal
			if a, err := s.getAttr(ino); err == nil {
				goal = a.Goal
			}
		}
		fn(ino, idx, goal, c)
	}
	return nil
}
