package client_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/local"
	"github.com/rampart-storage/rampart/internal/dfs/local/localtest"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// mounts starts a local cluster and mounts it twice through two clients (two
// master sessions), as two machines would. Needs root and RAMPART_ROOT_TESTS=1.
func mounts(t *testing.T) (*local.Cluster, string, string) {
	t.Helper()
	cl, mnts := localtest.Mounts(t, 2)
	return cl, mnts[0], mnts[1]
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitReleased waits until the master holds no open handle on the file at p
// (a path on any mount of cl).
func waitReleased(t *testing.T, cl *local.Cluster, p string) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	ino := st.Sys().(*syscall.Stat_t).Ino
	for deadline := time.Now().Add(5 * time.Second); cl.Master.OpenCount(ino) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still open in the master 5 s after close", p)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMountSmallFilesUseOffers: small files created through a mount take no
// WriteChunk (the create's offer carries chunk 0), and the other mount reads
// each one's content after its close.
func TestMountSmallFilesUseOffers(t *testing.T) {
	cl, a, b := mounts(t)
	allocs := cl.Master.Requests(proto.MsgWriteChunk)
	for i := range 20 {
		data := bytes.Repeat([]byte{byte('a' + i)}, 4096+i)
		name := fmt.Sprintf("f%d", i)
		if err := os.WriteFile(filepath.Join(a, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(b, name)); !bytes.Equal(got, data) {
			t.Fatalf("%s: other mount read %d bytes, want the %d written", name, len(got), len(data))
		}
	}
	if got := cl.Master.Requests(proto.MsgWriteChunk) - allocs; got != 0 {
		t.Errorf("WriteChunk requests for 20 small files: got %d, want 0", got)
	}
	if got := cl.Master.Requests(proto.MsgWriteEndChunk); got < 20 {
		t.Errorf("WriteEndChunk requests: got %d, want at least 20", got)
	}
}

// TestMountCloseToOpenAfterStat: a mount that cached a file's attributes
// (stat) sees the longer content another mount wrote and closed since, at
// its next open, within the attribute timeout.
func TestMountCloseToOpenAfterStat(t *testing.T) {
	_, a, b := mounts(t)
	for i := range 10 {
		if err := os.WriteFile(filepath.Join(a, "cto"), []byte("short"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := string(readFile(t, filepath.Join(b, "cto"))); got != "short" {
			t.Fatalf("first read: %q, want %q", got, "short")
		}
		if _, err := os.Stat(filepath.Join(b, "cto")); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("a much longer version %d", i)
		if err := os.WriteFile(filepath.Join(a, "cto"), []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := string(readFile(t, filepath.Join(b, "cto"))); got != want {
			t.Fatalf("round %d: read %q after the other mount's close, want %q", i, got, want)
		}
	}
}

// TestMountReplacedName: after another mount renamed a new file over a name
// this mount had looked up, stat and open of the name find the new file (the
// old inode answers ESTALE and the kernel looks the name up again) instead
// of failing with ENOENT until the entry expires.
func TestMountReplacedName(t *testing.T) {
	cl, a, b := mounts(t)
	for i := range 10 {
		if err := os.WriteFile(filepath.Join(a, "t"), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := string(readFile(t, filepath.Join(b, "t"))); got != "old" {
			t.Fatalf("round %d: first read %q, want %q", i, got, "old")
		}
		// The kernel sends RELEASE after close(2) returns. Until the master
		// has it, the old file outlives the rename as an open orphan and
		// rightly answers stat with its own size. (The inode number comes
		// from mount a: a stat through b would refresh b's cached
		// attributes of the old file, which stat may then use for cacheTTL.)
		waitReleased(t, cl, filepath.Join(a, "t"))
		want := fmt.Sprintf("new version %d", i)
		if err := os.WriteFile(filepath.Join(a, "t.new"), []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(a, "t.new"), filepath.Join(a, "t")); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(filepath.Join(b, "t"))
		if err != nil {
			t.Fatalf("round %d: stat after the rename: %v", i, err)
		}
		if st.Size() != int64(len(want)) {
			t.Errorf("round %d: size %d, want %d", i, st.Size(), len(want))
		}
		if got := string(readFile(t, filepath.Join(b, "t"))); got != want {
			t.Fatalf("round %d: read %q, want %q", i, got, want)
		}
	}
}

// TestMountCreateRace: open(O_CREAT) without O_EXCL on two mounts at once opens
// the file that the other mount created first instead of failing with EEXIST.
func TestMountCreateRace(t *testing.T) {
	_, a, b := mounts(t)
	const n = 200
	errs := make(chan error, 2*n)
	var wg sync.WaitGroup
	for _, mnt := range []string{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				f, err := os.OpenFile(filepath.Join(mnt, fmt.Sprintf("f%d", i)), os.O_CREATE|os.O_WRONLY, 0o644)
				if err != nil {
					errs <- err
					continue
				}
				f.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed < 3 {
			t.Error(err)
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d opens with O_CREAT failed", failed, 2*n)
	}
}

// storeReads is how many reads the cluster's chunkservers have served.
func storeReads(cl *local.Cluster) int64 {
	var n int64
	for _, s := range cl.Chunkservers {
		n += s.Store().Reads()
	}
	return n
}

// TestMountKeepsCacheOfUnchangedFile: a file read again, unchanged, is served
// from the kernel's page cache (no chunkserver read); once another mount
// changed it (same size, so only the times tell), the next open reads the new
// content, whether or not a stat saw the new times first.
func TestMountKeepsCacheOfUnchangedFile(t *testing.T) {
	cl, a, b := mounts(t)
	pa, pb := filepath.Join(a, "f"), filepath.Join(b, "f")
	write := func(c byte) {
		t.Helper()
		if err := os.WriteFile(pa, bytes.Repeat([]byte{c}, 8192), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, c byte) {
		t.Helper()
		if got := readFile(t, pb); !bytes.Equal(got, bytes.Repeat([]byte{c}, 8192)) {
			t.Fatalf("%s: read %q..., want %q...", what, got[:min(len(got), 4)], []byte{c, c, c, c})
		}
	}
	write('x')
	check("first read", 'x')
	r0 := storeReads(cl)
	for range 3 {
		check("read again", 'x')
	}
	if n := storeReads(cl) - r0; n != 0 {
		t.Errorf("reading an unchanged file again took %d chunkserver reads, want 0", n)
	}
	// Changed, then opened: the open sees the new times and drops the pages.
	write('y')
	check("read after another mount's change", 'y')
	// Changed, then stat after the attribute timeout (the kernel learns the
	// new times from Getattr), then opened.
	write('z')
	time.Sleep(1100 * time.Millisecond)
	if _, err := os.Stat(pb); err != nil {
		t.Fatal(err)
	}
	check("read after a change and a stat", 'z')
	r1 := storeReads(cl)
	check("read again after the change", 'z')
	if n := storeReads(cl) - r1; n != 0 {
		t.Errorf("reading the changed file again took %d chunkserver reads, want 0", n)
	}
}
