package chunkserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Recycled chunk files.
//
// A small file makes one chunk, one new file per copy; on ext4 a new inode
// is the larger part of a small file's cost on a chunkserver (the allocator
// scans past recently deleted inodes), and so is the unlink. A deleted
// chunk's file is therefore kept, cut to its header, in its data folder's free list
// (the folder "free", files "<n>.free") when nobody is using it, up to
// freeCap files per data folder; a new chunk takes one: header written,
// then renamed into place (never over an existing file). Files are cut to
// the header's size, not emptied: ext4 flushes a file truncated to zero
// bytes when it is closed (auto_da_alloc), which cost more than the inode. Files beyond the
// cap, and files still in use when their chunk is deleted (a request in
// flight keeps its descriptor), are unlinked as before, and so are all
// deleted chunk files on tmpfs, where creating a file is cheaper.
//
// A free file holds HeaderSize bytes, so a data folder's free list holds at
// most 2 MiB. At start the free folder's files are taken back into the list
// (cut to the header; those beyond the
// cap deleted; one also linked as a chunk file only unlinked). A chunk file whose header names another chunk than its file
// name (a recycled file whose new header never reached the disk before a
// power loss) is deleted by the scan.

// freeCap is the number of free files kept per data folder (Store.freeMax;
// benchmarks set 0 to compare with plain create and unlink).
const freeCap = 4096

// freeDirName is the free list's folder in each data folder.
const freeDirName = "free"

// freeFiles returns d's free list folder.
func freeFiles(d string) string { return filepath.Join(d, freeDirName) }

// tmpfsMagic is tmpfs's statfs type: there a new file costs less than
// recycling one, so deleted chunk files are unlinked.
const tmpfsMagic = 0x01021994

// loadFree takes the files of data folder d's free list folder back into
// the list. Called from OpenStore.
func (s *Store) loadFree(d string) error {
	var st unix.Statfs_t
	s.recycles[d] = unix.Statfs(d, &st) == nil && st.Type != tmpfsMagic
	fd := freeFiles(d)
	if err := os.MkdirAll(fd, 0o755); err != nil {
		return fmt.Errorf("free list folder %s: %w", fd, err)
	}
	ents, err := os.ReadDir(fd)
	if err != nil {
		return fmt.Errorf("free list folder %s: %w", fd, err)
	}
	for _, e := range ents {
		p := filepath.Join(fd, e.Name())
		var st unix.Stat_t
		// A file also linked as a chunk (a rename into place of which
		// only the new name reached the disk) loses only its free name.
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".free") ||
			len(s.free[d]) >= s.freeMax || unix.Lstat(p, &st) != nil || st.Nlink != 1 ||
			os.Truncate(p, HeaderSize) != nil {
			os.Remove(p)
			continue
		}
		s.free[d] = append(s.free[d], p)
		if n, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), ".free"), 16, 64); err == nil {
			s.freeSeq = max(s.freeSeq, n) // new free files get new names
		}
	}
	return nil
}

// dataDir returns the data folder holding a chunk file.
func dataDir(chunkPath string) string { return filepath.Dir(filepath.Dir(chunkPath)) }

// discardLocked removes the file of chunk c, deleted and retired: into its
// data folder's free list if idle (nobody can use c's descriptor any more)
// and the list has room, else unlinked. Called with s.mu held.
func (s *Store) discardLocked(c *chunk, idle bool) error {
	d := dataDir(c.path)
	if idle && s.recycles[d] && len(s.free[d]) < s.freeMax {
		s.freeSeq++
		fp := filepath.Join(freeFiles(d), fmt.Sprintf("%016x.free", s.freeSeq))
		if unix.Truncate(c.path, HeaderSize) == nil && os.Rename(c.path, fp) == nil {
			s.free[d] = append(s.free[d], fp)
			return nil
		}
	}
	if err := os.Remove(c.path); err != nil {
		return fmt.Errorf("delete chunk %016x: %w", c.hdr.ID, err)
	}
	return nil
}

// newChunkLocked makes the file of a new chunk at path, in data folder d:
// a recycled file if d's free list has one, else a new file. Called with
// s.mu held.
func (s *Store) newChunkLocked(d, path string, h Header) (*chunk, error) {
	for n := len(s.free[d]); n > 0; n = len(s.free[d]) {
		fp := s.free[d][n-1]
		s.free[d] = s.free[d][:n-1]
		c, err := reuseChunk(s.files, fp, path, h)
		if err == nil {
			return c, nil
		}
		os.Remove(fp)
		if errors.Is(err, os.ErrExist) {
			return nil, err
		}
	}
	return createChunk(s.files, path, h)
}

// reuseChunk turns the free file fp into chunk h at path: header written
// over the old one, renamed into place unless path exists.
func reuseChunk(files *openFiles, fp, path string, h Header) (*chunk, error) {
	f, err := os.OpenFile(fp, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	b := EncodeHeader(h)
	if fi, err := f.Stat(); err != nil || fi.Size() != HeaderSize {
		f.Close()
		return nil, fmt.Errorf("free file %s: not %d bytes", fp, HeaderSize)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		f.Close()
		return nil, err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, fp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE); err != nil {
		f.Close()
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create chunk %016x v%d: %w", h.ID, h.Version, os.ErrExist)
		}
		return nil, err
	}
	_, crcs, _ := DecodeHeader(b)
	c := &chunk{path: path, hdr: h, crcs: crcs, size: HeaderSize, wgen: 1}
	c.ver.Store(h.Version)
	c.files = files
	c.install(f)
	return c, nil
}

// nameMatches reports whether the chunk file at path is named after chunk
// id (chunk_<ID>_<VERSION>.chunk).
func nameMatches(path string, id uint64) bool {
	return strings.HasPrefix(filepath.Base(path), fmt.Sprintf("chunk_%016X_", id))
}
