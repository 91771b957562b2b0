package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// fakeSends stands in for the chunkservers behind the write-back queue:
// each queued write that is sent blocks until the test finishes it.
type fakeSends struct {
	mu      sync.Mutex
	started []int64 // offsets, in the order the writes were sent
	finish  map[int64]chan error
	changed chan struct{}
}

func newFakeSends(c *Client) *fakeSends {
	f := &fakeSends{finish: map[int64]chan error{}, changed: make(chan struct{}, 100)}
	c.wb.send = func(ctx context.Context, ino uint64, p []byte, off int64) error {
		f.mu.Lock()
		f.started = append(f.started, off)
		ch := f.ch(off)
		f.mu.Unlock()
		f.changed <- struct{}{}
		return <-ch
	}
	return f
}

func (f *fakeSends) ch(off int64) chan error {
	if f.finish[off] == nil {
		f.finish[off] = make(chan error, 1)
	}
	return f.finish[off]
}

// done finishes the write at off with err.
func (f *fakeSends) done(off int64, err error) {
	f.mu.Lock()
	ch := f.ch(off)
	f.mu.Unlock()
	ch <- err
}

// await waits until the writes sent so far are those at the offsets want
// (in any order: writes sent together start in any order).
func (f *fakeSends) await(t *testing.T, want ...int64) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	slices.Sort(want)
	for {
		f.mu.Lock()
		got := fmt.Sprint(slices.Sorted(slices.Values(f.started)))
		f.mu.Unlock()
		if got == fmt.Sprint(want) {
			return
		}
		select {
		case <-f.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("writes sent: got %s, want %v", got, want)
		}
	}
}

func testClient(t *testing.T) *Client {
	t.Helper()
	c := &Client{wb: writeBack{files: map[uint64]*fileQueue{}}, cache: newCache()}
	c.ctx, c.cancel = context.WithCancel(t.Context())
	t.Cleanup(c.cancel)
	return c
}

// TestWriteBackWindow: the write-back queue is a sliding window. A write
// queued while earlier ones are on their way goes out at once unless it
// overlaps one of them; when an earlier write finishes, the ones it held up
// go out without waiting for the rest; Flush waits for all and reports the
// first error.
func TestWriteBackWindow(t *testing.T) {
	ctx := t.Context()
	c := testClient(t)
	f := newFakeSends(c)
	const ino = 7
	const mib = 1 << 20
	put := func(off int64, n int) {
		t.Helper()
		if err := c.WriteAtAsync(ctx, ino, make([]byte, n), off); err != nil {
			t.Fatalf("queue %d bytes at %d: %v", n, off, err)
		}
	}
	put(0, mib)
	put(mib, mib)
	f.await(t, 0, mib)
	// Finishing the first does not wait for the second; the next write,
	// queued after that, goes out while the second is still on its way.
	f.done(0, nil)
	put(2*mib, mib)
	f.await(t, 0, mib, 2*mib)
	// A write overlapping one on its way waits for it, and so does the
	// write queued behind it (queue order).
	put(2*mib+4096, 4096)
	put(8*mib, mib)
	time.Sleep(50 * time.Millisecond)
	f.await(t, 0, mib, 2*mib)
	if c.writesQueued(ino) != true {
		t.Error("writesQueued: got false with writes on their way")
	}
	f.done(2*mib, nil)
	f.await(t, 0, mib, 2*mib, 2*mib+4096, 8*mib)
	failed := errors.New("copy failed")
	f.done(2*mib+4096, failed)
	f.done(8*mib, nil)

	// Flush waits for the write still on its way (mib).
	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush(ctx, ino) }()
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) with a write on its way", err)
	case <-time.After(50 * time.Millisecond):
	}
	f.done(mib, nil)
	if err := <-flushed; !errors.Is(err, failed) {
		t.Errorf("Flush: got %v, want the failed write's error", err)
	}
	if c.writesQueued(ino) {
		t.Error("writesQueued: got true after Flush")
	}
}

// TestWriteBackBounded: a writer waits once MaxQueued bytes are queued and
// goes on as soon as one write finishes.
func TestWriteBackBounded(t *testing.T) {
	ctx := t.Context()
	c := testClient(t)
	f := newFakeSends(c)
	const ino = 9
	piece := MaxQueued / 4
	for i := range 4 {
		if err := c.WriteAtAsyncOwned(ctx, ino, make([]byte, piece), int64(i*piece)); err != nil {
			t.Fatal(err)
		}
	}
	f.await(t, 0, int64(piece), int64(2*piece), int64(3*piece))
	queued := make(chan error, 1)
	go func() { queued <- c.WriteAtAsync(ctx, ino, make([]byte, piece), int64(4*piece)) }()
	select {
	case err := <-queued:
		t.Fatalf("write past MaxQueued returned at once (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	f.done(int64(2*piece), nil)
	if err := <-queued; err != nil {
		t.Fatal(err)
	}
	f.await(t, 0, int64(piece), int64(2*piece), int64(3*piece), int64(4*piece))
	for _, off := range []int{0, piece, 3 * piece, 4 * piece} {
		f.done(int64(off), nil)
	}
	if err := c.Flush(ctx, ino); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentWritesAcrossCopyLoss: many writes of one chunk are on their
// way when a chunkserver holding a copy dies. Each piece that fails asks the
// master to recover the chunk, and each recovery moves the copies to a new
// version, so a piece sent after its own recovery can find the version moved
// on again by another's (ESTALE). Every write must still succeed and the
// data read back must be what was written (the DFS fault drill's dd once
// failed with "Stale file handle" on this).
func TestConcurrentWritesAcrossCopyLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c, cl := localClient(t, ctx)
	a, err := c.Create(ctx, proto.RootIno, "f", proto.Node{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	const pieces, size = 32, 128 << 10
	want := make([]byte, pieces*size)
	if err := c.WriteAt(ctx, a.Ino, want, 0); err != nil {
		t.Fatal(err)
	}
	loc, _, err := c.cachedChunkLoc(ctx, a.Ino, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cl.Chunkservers {
		if s.Addr() == loc.Servers[0] {
			s.Close()
		}
	}
	for i := range want {
		want[i] = byte(i*7 + i/size)
	}
	var wg sync.WaitGroup
	errs := make(chan error, pieces)
	for i := range pieces {
		wg.Go(func() {
			if err := c.WriteAt(ctx, a.Ino, want[i*size:(i+1)*size], int64(i*size)); err != nil {
				errs <- fmt.Errorf("piece %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := make([]byte, len(want))
	if n, err := c.ReadAt(ctx, a.Ino, got, 0); err != nil || n != len(want) || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, %v; equal to what was written: %v", n, err, bytes.Equal(got, want))
	}
}
