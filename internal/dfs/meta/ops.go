package meta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
)

// MaxNameLen bounds a directory entry's name, as NAME_MAX.
const MaxNameLen = 255

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > MaxNameLen {
		return fmt.Errorf("name %q: %w", name, syscall.EINVAL)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return fmt.Errorf("name %q: %w", name, syscall.EINVAL)
		}
	}
	return nil
}

// Create makes a new inode named name in directory parent: a file, directory,
// symlink or special file depending on n.Mode. The goal is inherited from the
// parent. It fails with EEXIST if the name is taken.
func (s *Store) Create(parent uint64, name string, n Node) (*Attr, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	p, err := s.getAttr(parent)
	if err == nil && !p.IsDir() {
		err = fmt.Errorf("create %q in inode %d: %w", name, parent, syscall.ENOTDIR)
	}
	if err == nil {
		if _, lerr := s.lookup(parent, name); lerr == nil {
			err = fmt.Errorf("create %q in inode %d: %w", name, parent, syscall.EEXIST)
		} else if !errors.Is(lerr, syscall.ENOENT) {
			err = lerr
		}
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	now := s.now().UnixNano()
	a := &Attr{Ino: s.nextIno, Mode: n.Mode, Uid: n.Uid, Gid: n.Gid, Rdev: n.Rdev, Nlink: 1,
		Goal: p.Goal, Atime: now, Mtime: now, Ctime: now, Target: n.Target}
	if a.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		a.Size = uint64(len(n.Target))
	}
	s.nextIno++
	b := s.db.NewBatch()
	if a.IsDir() {
		a.Nlink = 2
		p.Nlink++
	}
	p.Mtime, p.Ctime = now, now
	putAttr(b, a)
	putAttr(b, p)
	b.Set(direntKey(parent, name), binary.BigEndian.AppendUint64(nil, a.Ino), nil)
	s.putCounters(b)
	if err := s.commit(b); err != nil {
		return nil, fmt.Errorf("create %q in inode %d: %w", name, parent, err)
	}
	return a, nil
}

// Link adds a hard link newName in newParent to inode ino.
func (s *Store) Link(ino, newParent uint64, newName string) (*Attr, error) {
	if err := checkName(newName); err != nil {
		return nil, err
	}
	s.mu.Lock()
	a, err := s.getAttr(ino)
	var p *Attr
	if err == nil && a.IsDir() {
		err = fmt.Errorf("link inode %d: %w", ino, syscall.EPERM)
	}
	if err == nil {
		p, err = s.getAttr(newParent)
	}
	if err == nil {
		if _, lerr := s.lookup(newParent, newName); lerr == nil {
			err = fmt.Errorf("link %q in inode %d: %w", newName, newParent, syscall.EEXIST)
		}
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	now := s.now().UnixNano()
	a.Nlink++
	a.Ctime = now
	p.Mtime, p.Ctime = now, now
	b := s.db.NewBatch()
	putAttr(b, a)
	putAttr(b, p)
	b.Set(direntKey(newParent, newName), binary.BigEndian.AppendUint64(nil, ino), nil)
	return a, s.commit(b)
}

// Unlink removes name from parent (rmdir if dir is true, which requires an
// empty directory). When the last link goes, the inode and its chunk map are
// deleted and the freed chunks are returned so their copies can be removed.
func (s *Store) Unlink(parent uint64, name string, dir bool) ([]Chunk, error) {
	s.mu.Lock()
	ino, err := s.lookup(parent, name)
	var a, p *Attr
	if err == nil {
		a, err = s.getAttr(ino)
	}
	if err == nil {
		p, err = s.getAttr(parent)
	}
	if err == nil {
		switch {
		case dir && !a.IsDir():
			err = fmt.Errorf("rmdir %q: %w", name, syscall.ENOTDIR)
		case !dir && a.IsDir():
			err = fmt.Errorf("unlink %q: %w", name, syscall.EISDIR)
		case dir:
			var ents []Dirent
			ents, err = s.Readdir(ino)
			if err == nil && len(ents) > 0 {
				err = fmt.Errorf("rmdir %q: %w", name, syscall.ENOTEMPTY)
			}
		}
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	now := s.now().UnixNano()
	b := s.db.NewBatch()
	b.Delete(direntKey(parent, name), nil)
	p.Mtime, p.Ctime = now, now
	if dir {
		p.Nlink--
	}
	putAttr(b, p)
	var freed []Chunk
	a.Nlink--
	if dir || a.Nlink == 0 {
		freed, err = s.deleteInode(b, ino)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
	} else {
		a.Ctime = now
		putAttr(b, a)
	}
	if err := s.commit(b); err != nil {
		return nil, fmt.Errorf("unlink %q in inode %d: %w", name, parent, err)
	}
	return freed, nil
}

func (s *Store) deleteInode(b *pebble.Batch, ino uint64) ([]Chunk, error) {
	b.Delete(inodeKey(ino), nil)
	b.DeleteRange(xattrKey(ino, ""), xattrKey(ino+1, ""), nil)
	cs, err := s.Chunks(ino)
	if err != nil {
		return nil, err
	}
	b.DeleteRange(chunkKey(ino, 0), chunkKey(ino+1, 0), nil)
	var out []Chunk
	for _, c := range cs {
		if c.ID != 0 {
			out = append(out, c)
		}
	}
	return out, nil
}

// SetAttrIn selects the attributes Setattr changes.
type SetAttrIn struct {
	Mode, Uid, Gid *uint32
	Size           *uint64
	Atime, Mtime   *int64
	Goal           *uint8
}

// Setattr changes attributes of ino. Shrinking a file drops the chunks wholly
// past the new end and returns them.
func (s *Store) Setattr(ino uint64, in SetAttrIn) (*Attr, []Chunk, error) {
	s.mu.Lock()
	a, err := s.getAttr(ino)
	if err != nil {
		s.mu.Unlock()
		return nil, nil, err
	}
	b := s.db.NewBatch()
	now := s.now().UnixNano()
	if in.Mode != nil {
		a.Mode = a.Mode&syscall.S_IFMT | *in.Mode&^syscall.S_IFMT
	}
	if in.Uid != nil {
		a.Uid = *in.Uid
	}
	if in.Gid != nil {
		a.Gid = *in.Gid
	}
	if in.Atime != nil {
		a.Atime = *in.Atime
	}
	if in.Mtime != nil {
		a.Mtime = *in.Mtime
	}
	if in.Goal != nil {
		a.Goal = *in.Goal
	}
	var freed []Chunk
	if in.Size != nil {
		if !a.IsRegular() {
			s.mu.Unlock()
			return nil, nil, fmt.Errorf("truncate inode %d: %w", ino, syscall.EINVAL)
		}
		if *in.Size < a.Size {
			keep := uint32((*in.Size + ChunkSize - 1) / ChunkSize)
			cs, err := s.Chunks(ino)
			if err != nil {
				s.mu.Unlock()
				return nil, nil, err
			}
			for i := int(keep); i < len(cs); i++ {
				if cs[i].ID != 0 {
					freed = append(freed, cs[i])
				}
			}
			b.DeleteRange(chunkKey(ino, keep), chunkKey(ino+1, 0), nil)
		}
		a.Size = *in.Size
		if in.Mtime == nil {
			a.Mtime = now
		}
	}
	a.Ctime = now
	putAttr(b, a)
	if err := s.commit(b); err != nil {
		return nil, nil, fmt.Errorf("setattr inode %d: %w", ino, err)
	}
	return a, freed, nil
}

// Rename moves oldName in oldParent to newName in newParent, replacing a
// target of a compatible type (an empty directory for a directory). The
// replaced inode's freed chunks are returned. With noReplace an existing
// target fails the rename with EEXIST (RENAME_NOREPLACE).
func (s *Store) Rename(oldParent uint64, oldName string, newParent uint64, newName string, noReplace bool) ([]Chunk, error) {
	if err := checkName(newName); err != nil {
		return nil, err
	}
	s.mu.Lock()
	ino, err := s.lookup(oldParent, oldName)
	var a, op, np *Attr
	if err == nil {
		a, err = s.getAttr(ino)
	}
	if err == nil {
		op, err = s.getAttr(oldParent)
	}
	if err == nil {
		np = op
		if newParent != oldParent {
			np, err = s.getAttr(newParent)
		}
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	b := s.db.NewBatch()
	now := s.now().UnixNano()
	var freed []Chunk
	if tino, terr := s.lookup(newParent, newName); terr == nil {
		if noReplace {
			s.mu.Unlock()
			return nil, fmt.Errorf("rename %q over %q: %w", oldName, newName, syscall.EEXIST)
		}
		if tino == ino {
			s.mu.Unlock()
			return nil, nil
		}
		t, err := s.getAttr(tino)
		if err == nil {
			switch {
			case a.IsDir() && !t.IsDir():
				err = fmt.Errorf("rename over %q: %w", newName, syscall.ENOTDIR)
			case !a.IsDir() && t.IsDir():
				err = fmt.Errorf("rename over %q: %w", newName, syscall.EISDIR)
			case t.IsDir():
				if ents, rerr := s.Readdir(tino); rerr != nil {
					err = rerr
				} else if len(ents) > 0 {
					err = fmt.Errorf("rename over %q: %w", newName, syscall.ENOTEMPTY)
				}
			}
		}
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		t.Nlink--
		if t.IsDir() {
			np.Nlink--
		}
		if t.IsDir() || t.Nlink == 0 {
			if freed, err = s.deleteInode(b, tino); err != nil {
				s.mu.Unlock()
				return nil, err
			}
		} else {
			t.Ctime = now
			putAttr(b, t)
		}
	}
	b.Delete(direntKey(oldParent, oldName), nil)
	b.Set(direntKey(newParent, newName), binary.BigEndian.AppendUint64(nil, ino), nil)
	if a.IsDir() && oldParent != newParent {
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
