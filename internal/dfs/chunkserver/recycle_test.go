package chunkserver

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func inode(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// recyclingStore opens a store on one folder with the free list on even if
// the folder is on tmpfs.
func recyclingStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.recycles[dir] = true
	return s
}

// TestRecycledChunkFile: a deleted chunk's file becomes the next new
// chunk's file, which holds nothing of the old chunk; a file in use when
// its chunk is deleted is not recycled; the free list survives a restart.
func TestRecycledChunkFile(t *testing.T) {
	dir := t.TempDir()
	s := recyclingStore(t, dir)
	old := bytes.Repeat([]byte("old chunk data "), 10000)
	if err := s.WriteAt(1, 1, old, 1<<20); err != nil {
		t.Fatal(err)
	}
	c, _ := s.get(1, 1)
	ino := inode(t, c.path)
	if err := s.Delete(1, 1); err != nil {
		t.Fatal(err)
	}
	if got := len(s.free[dir]); got != 1 {
		t.Fatalf("free list holds %d files after a delete, want 1", got)
	}
	if fi, err := os.Stat(s.free[dir][0]); err != nil || fi.Size() != HeaderSize {
		t.Fatalf("free file: %v, %v; want %d bytes", fi, err, HeaderSize)
	}

	if err := s.WriteAt(2, 7, []byte("new"), 100); err != nil {
		t.Fatal(err)
	}
	c, _ = s.get(2, 7)
	if got := inode(t, c.path); got != ino {
		t.Errorf("new chunk file is inode %d, want the recycled %d", got, ino)
	}
	if n, err := s.Length(2, 7); err != nil || n != 103 {
		t.Errorf("recycled chunk length %d, %v; want 103", n, err)
	}
	got := make([]byte, len(old))
	if err := s.ReadAt(2, 7, got, 1<<20); err != nil || !bytes.Equal(got, make([]byte, len(old))) {
		t.Errorf("recycled chunk reads old data or fails (%v), want zeros", err)
	}
	if err := s.Sync(2, 7); err != nil {
		t.Fatal(err)
	}

	// A file in use when its chunk is deleted is unlinked, not recycled:
	// its user could still write to it.
	c.mu.Lock()
	if _, err := c.acquire(); err != nil {
		t.Fatal(err)
	}
	c.mu.Unlock()
	if err := s.Delete(2, 7); err != nil {
		t.Fatal(err)
	}
	c.release()
	if got := len(s.free[dir]); got != 0 {
		t.Errorf("free list holds %d files after deleting a chunk in use, want 0", got)
	}

	// The free list is found again at start.
	for id := uint64(30); id < 32; id++ { // kept across the restart
		if err := s.WriteAt(id, 1, []byte("y"), 0); err != nil {
			t.Fatal(err)
		}
	}
	for id := uint64(10); id < 13; id++ {
		if err := s.WriteAt(id, 1, []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
	}
	for id := uint64(10); id < 13; id++ {
		if err := s.Delete(id, 1); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = recyclingStore(t, dir)
	if got := len(s.free[dir]); got != 3 {
		t.Errorf("free list holds %d files after a restart, want 3", got)
	}
	if got := len(s.Chunks()); got != 2 {
		t.Errorf("%d chunks after a restart, want 2", got)
	}
	// New free files do not take the names of those found at start.
	for id := uint64(30); id < 32; id++ {
		if err := s.Delete(id, 1); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(freeFiles(dir))
	if len(ents) != 5 || len(s.free[dir]) != 5 {
		t.Errorf("%d free files on disk, %d listed, want 5 and 5", len(ents), len(s.free[dir]))
	}
}

// TestScanDropsMisnamedChunk: a chunk file whose header names another
// chunk (a recycled file whose new header was lost) is deleted at start.
func TestScanDropsMisnamedChunk(t *testing.T) {
	dir := t.TempDir()
	s := recyclingStore(t, dir)
	if err := s.WriteAt(5, 1, []byte("five"), 0); err != nil {
		t.Fatal(err)
	}
	c, _ := s.get(5, 1)
	path := c.path
	s.Close()
	wrong := filepath.Join(filepath.Dir(path), "chunk_0000000000000006_00000001.chunk")
	if err := os.Rename(path, wrong); err != nil {
		t.Fatal(err)
	}
	s = recyclingStore(t, dir)
	if got := s.Chunks(); len(got) != 0 {
		t.Errorf("chunks %v after start, want none", got)
	}
	if _, err := os.Stat(wrong); !os.IsNotExist(err) {
		t.Errorf("misnamed chunk file still there (%v)", err)
	}
}

// TestFreshBlockNotRead: a write into a block past the end of the chunk
// file does not read the block (it is zeros), while a partial write of a
// block within the file reads and checks it.
func TestFreshBlockNotRead(t *testing.T) {
	s := recyclingStore(t, t.TempDir())
	if err := s.WriteAt(1, 1, []byte("abc"), 10); err != nil {
		t.Fatal(err)
	}
	c, _ := s.get(1, 1)
	// Bytes the store did not write: in block 0 (inside the file) and in
	// block 3 (past the end of the file as the store knows it). Only a
	// write that reads the block notices them.
	f, err := os.OpenFile(c.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{HeaderSize + 11, HeaderSize + 3*BlockSize + 20} {
		if _, err := f.WriteAt([]byte("X"), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if err := s.WriteAt(1, 1, []byte("def"), 3*BlockSize+10); err != nil {
		t.Errorf("write of a block past the end: %v, want no read of it", err)
	}
	if err := s.WriteAt(1, 1, []byte("ghi"), 20); err == nil {
		t.Error("partial write of a corrupted block succeeded, want a checksum error")
	}
}
