package chunkserver

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// openUnder counts the process's descriptors open on files under dir.
func openUnder(t testing.TB, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/") {
			n++
		}
	}
	return n
}

func chunkData(id uint64, n int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("chunk %04d|", id)), n/11+1)[:n]
}

// TestOpenFilesBounded writes and reads back 100 chunks from 16 goroutines
// with a cap of 8 open files: every byte comes back and, once idle, the
// store holds at most 8 descriptors.
func TestOpenFilesBounded(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	const limit, chunks = 8, 100
	s.SetOpenFiles(limit)

	var wg sync.WaitGroup
	errs := make(chan error, chunks)
	ids := make(chan uint64)
	for range 16 {
		wg.Go(func() {
			for id := range ids {
				// A partial block, a large aligned range (O_DIRECT), then a
				// read of both, twice: files are evicted and reopened meanwhile.
				small, large := chunkData(id, 5000), chunkData(id+1, 512<<10)
				for round := range 2 {
					if err := s.WriteAt(id, 1, small, 100); err != nil {
						errs <- err
						return
					}
					if err := s.WriteAt(id, 1, large, 1<<20); err != nil {
						errs <- err
						return
					}
					got := make([]byte, len(small))
					if err := s.ReadAt(id, 1, got, 100); err != nil || !bytes.Equal(got, small) {
						errs <- fmt.Errorf("chunk %d round %d: small read back wrong (err %v)", id, round, err)
						return
					}
					got = make([]byte, len(large))
					if err := s.ReadAt(id, 1, got, 1<<20); err != nil || !bytes.Equal(got, large) {
						errs <- fmt.Errorf("chunk %d round %d: large read back wrong (err %v)", id, round, err)
						return
					}
				}
			}
		})
	}
	for id := uint64(1); id <= chunks; id++ {
		ids <- id
	}
	close(ids)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := openUnder(t, dir); got > limit {
		t.Errorf("%d descriptors open on chunk files after the writes, want at most %d", got, limit)
	}
	if got := s.files.openDescriptors(); got > limit {
		t.Errorf("store counts %d open descriptors, want at most %d", got, limit)
	}
	// Every chunk still reads back after its file was closed.
	for id := uint64(1); id <= chunks; id++ {
		got := make([]byte, 5000)
		if err := s.ReadAt(id, 1, got, 100); err != nil || !bytes.Equal(got, chunkData(id, 5000)) {
			t.Fatalf("chunk %d: read back wrong after eviction (err %v)", id, err)
		}
	}
	if got := openUnder(t, dir); got > limit {
		t.Errorf("%d descriptors open on chunk files after the reads, want at most %d", got, limit)
	}
}

// TestOpenFilesScanKeepsNoneOpen: opening a store with many chunks does not
// open them all.
func TestOpenFilesScanKeepsNoneOpen(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 50; id++ {
		if err := s.WriteAt(id, 1, chunkData(id, 100), 0); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if got := openUnder(t, dir); got != 0 {
		t.Errorf("%d descriptors open after Close, want 0", got)
	}
	s, err = OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetOpenFiles(4)
	if got := openUnder(t, dir); got != 0 {
		t.Errorf("%d descriptors open after the scan, want 0", got)
	}
	if got := len(s.Chunks()); got != 50 {
		t.Fatalf("%d chunks found, want 50", got)
	}
}

// TestOpenFilesVersionMoveAndDelete: a chunk evicted after a version move
// reopens under its new name; a deleted chunk's file is closed by its last
// user and a stale handle never opens a file again.
func TestOpenFilesVersionMoveAndDelete(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetOpenFiles(1)
	if err := s.WriteAt(1, 1, []byte("one"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetVersion(1, 1, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(2, 1, []byte("two"), 0); err != nil { // evicts chunk 1
		t.Fatal(err)
	}
	got := make([]byte, 3)
	if err := s.ReadAt(1, 2, got, 0); err != nil || string(got) != "one" {
		t.Fatalf("chunk 1 v2 after eviction: got %q, %v; want \"one\"", got, err)
	}

	c, err := s.get(2, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	if _, err := c.acquire(); err != nil { // a user in the middle of a request
		t.Fatal(err)
	}
	c.mu.Unlock()
	if err := s.Delete(2, 1); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	open := c.f != nil
	c.mu.Unlock()
	if !open {
		t.Fatal("delete closed the file under its user")
	}
	c.release()
	if got := openUnder(t, dir); got > 1 {
		t.Errorf("%d descriptors open, want at most 1 (chunk 1's)", got)
	}
	if err := c.ReadAt(got, 0); !errors.Is(err, ErrNoChunk) {
		t.Errorf("read through a deleted chunk's handle: got %v, want ErrNoChunk", err)
	}
}
