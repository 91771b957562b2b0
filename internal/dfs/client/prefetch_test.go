package client

import (
	"bytes"
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// TestPrefetchSmallFile: after an open, Prefetch starts fetching a small
// file's data; the first read uses that fetch instead of sending its own.
// A file larger than PrefetchMax is not fetched, and a write of this
// client drops the fetched data, so the next read sees the write.
func TestPrefetchSmallFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, _ := localClient(t, ctx)

	piece := func(ino uint64) *raPieceData {
		c.ra.mu.Lock()
		defer c.ra.mu.Unlock()
		if f := c.ra.files[ino]; f != nil {
			return f.pieces[0]
		}
		return nil
	}
	file := func(name string, data []byte) uint64 {
		t.Helper()
		a, err := c.Create(ctx, proto.RootIno, name, proto.Node{Mode: syscall.S_IFREG | 0o644})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteAt(ctx, a.Ino, data, 0); err != nil {
			t.Fatal(err)
		}
		return a.Ino
	}

	data := bytes.Repeat([]byte("small"), 1000)
	ino := file("small", data)
	a, err := c.Open(ctx, ino, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Prefetch(ino, a.Size)
	pc := piece(ino)
	if pc == nil || pc.n != len(data) {
		t.Fatalf("after Prefetch: piece %+v, want one of %d bytes at 0", pc, len(data))
	}
	got := make([]byte, 8192)
	n, err := c.ReadAt(ctx, ino, got, 0)
	if err != nil || !bytes.Equal(got[:n], data) {
		t.Fatalf("read after Prefetch: %d bytes, %v; want the %d written", n, err, len(data))
	}
	if piece(ino) != pc {
		t.Error("the read fetched the data again instead of using the prefetched piece")
	}

	// A write drops the fetched data: the next read sees it.
	if err := c.WriteAt(ctx, ino, []byte("LARGE"), 0); err != nil {
		t.Fatal(err)
	}
	if n, err := c.ReadAt(ctx, ino, got, 0); err != nil || string(got[:5]) != "LARGE" || n != len(data) {
		t.Errorf("read after a write: got %q (%d bytes), %v; want \"LARGE\" first", got[:5], n, err)
	}

	big := file("big", make([]byte, PrefetchMax+1))
	if a, err = c.Open(ctx, big, 0); err != nil {
		t.Fatal(err)
	}
	c.Prefetch(big, a.Size)
	if pc := piece(big); pc != nil {
		t.Errorf("Prefetch of a %d-byte file fetched %d bytes, want nothing", a.Size, pc.n)
	}
}
