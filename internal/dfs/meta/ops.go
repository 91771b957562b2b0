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
	a, _, err := s.create(parent, name, n, false, false)
	return a, err
}

// CreateOpen is Create for a file that the caller also opens: the new inode
// counts one open handle (see OpenInode) in the same step.
func (s *Store) CreateOpen(parent uint64, name string, n Node) (*Attr, error) {
	a, _, err := s.create(parent, name, n, true, false)
	return a, err
}

// CreateOpenReserve is CreateOpen that also reserves a chunk id, recorded
// in the same commit (the id is never handed out again, also after a
// crash), for the master to offer as the new file's chunk 0 (see BindChunk).
func (s *Store) CreateOpenReserve(parent uint64, name string, n Node) (*Attr, uint64, error) {
	return s.create(parent, name, n, true, true)
}

func (s *Store) create(parent uint64, name string, n Node, open, reserve bool) (*Attr, uint64, error) {
	if err := checkName(name); err != nil {
		return nil, 0, err
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
		return nil, 0, err
	}
	now := s.now().UnixNano()
	a := &Attr{Ino: s.nextIno, Mode: n.Mode, Uid: n.Uid, Gid: n.Gid, Rdev: n.Rdev, Nlink: 1,
		Goal: p.Goal, Atime: now, Mtime: now, Ctime: now, Target: n.Target}
	if a.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		a.Size = uint64(len(n.Target))
	}
	s.nextIno++
	var chunkID uint64
	if reserve && a.IsRegular() {
		chunkID = s.nextChunk
		s.nextChunk++
	}
	b := s.db.NewBatch()
	if a.IsDir() {
		a.Nlink = 2
		p.Nlink++
		b.Set(parentKey(a.Ino), binary.BigEndian.AppendUint64(nil, parent), nil)
	}
	p.Mtime, p.Ctime = now, now
	putAttr(b, a)
	putAttr(b, p)
	b.Set(direntKey(parent, name), binary.BigEndian.AppendUint64(nil, a.Ino), nil)
	s.putCounters(b)
	s.inodes++
	if open {
		s.opens[a.Ino]++
	}
	if err := s.commit(b); err != nil {
		return nil, 0, fmt.Errorf("create %q in inode %d: %w", name, parent, err)
	}
	return a, chunkID, nil
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
	if err == nil && a.Nlink == 0 {
		err = fmt.Errorf("link unlinked inode %d: %w", ino, syscall.ENOENT)
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
	a.Nlink--
	freed, err := s.dropLink(b, a, now)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if err := s.commit(b); err != nil {
		return nil, fmt.Errorf("unlink %q in inode %d: %w", name, parent, err)
	}
	return freed, nil
}

// dropLink records that inode a lost a link (a.Nlink already decremented):
// a file that still has links or open handles stays (an orphan when only
// handles remain); anything else is deleted and its chunks returned.
func (s *Store) dropLink(b *pebble.Batch, a *Attr, now int64) ([]Chunk, error) {
	if !a.IsDir() && (a.Nlink > 0 || s.opens[a.Ino] > 0) {
		a.Ctime = now
		putAttr(b, a)
		if a.Nlink == 0 {
			b.Set(orphanKey(a.Ino), nil, nil)
			s.orphans[a.Ino] = true
		}
		return nil, nil
	}
	return s.deleteInode(b, a.Ino)
}

func (s *Store) deleteInode(b *pebble.Batch, ino uint64) ([]Chunk, error) {
	s.inodes--
	b.Delete(inodeKey(ino), nil)
	b.Delete(parentKey(ino), nil)
	b.Delete(orphanKey(ino), nil)
	delete(s.orphans, ino)
	// Point deletes, not range deletions: a file has few keys, and range
	// tombstones from every unlink would slow every later read.
	names, err := s.ListXattr(ino)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		b.Delete(xattrKey(ino, name), nil)
	}
	cs, err := s.Chunks(ino)
	if err != nil {
		return nil, err
	}
	var out []Chunk
	for i, c := range cs {
		if c.ID != 0 {
			b.Delete(chunkKey(ino, uint32(i)), nil)
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
					b.Delete(chunkKey(ino, uint32(i)), nil)
					freed = append(freed, cs[i])
				}
			}
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
