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

	piece := func(ino uint64) *raPieceData { return firstPiece(c, ino) }
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

// firstPiece returns the read-ahead piece at offset 0 of ino, if any.
func firstPiece(c *Client, ino uint64) *raPieceData {
	c.ra.mu.Lock()
	defer c.ra.mu.Unlock()
	if f := c.ra.files[ino]; f != nil {
		return f.pieces[0]
	}
	return nil
}

// TestSpeculativeOpenRead: an open for reading of a small file this client
// knew sends the read with the Open, and the first read uses it. Whatever
// another client did to the file before the open (rewrite in place, grow
// it, truncate and rewrite it into a new chunk), the read returns the data
// as of the open; a hint naming a chunk that is gone costs only the wasted
// read.
func TestSpeculativeOpenRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, cl := localClient(t, ctx)
	w, err := Dial(ctx, cl.Master.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	reads := func() int64 {
		var n int64
		for _, s := range cl.Chunkservers {
			n += s.Store().Reads()
		}
		return n
	}
	// open opens ino as the mount does for a reader expecting guess bytes,
	// then reads it whole.
	open := func(step string, ino, guess uint64, wantAdopted bool, want []byte) {
		t.Helper()
		a, err := c.OpenToRead(ctx, ino, 0, guess)
		if err != nil {
			t.Fatalf("%s: open: %v", step, err)
		}
		pc := firstPiece(c, ino)
		if (pc != nil) != wantAdopted {
			t.Errorf("%s: read sent with the open kept: %v, want %v", step, pc != nil, wantAdopted)
		}
		if pc != nil {
			<-pc.done // counted by its chunkserver before the read below
		}
		c.Prefetch(ino, a.Size)
		before := reads()
		got := make([]byte, 2*PrefetchMax)
		n, err := c.ReadAt(ctx, ino, got, 0)
		if err != nil || !bytes.Equal(got[:n], want) {
			t.Fatalf("%s: read %d bytes (%q...), %v; want the %d bytes %q...", step, n, got[:min(n, 8)], err, len(want), want[:8])
		}
		if wantAdopted && reads() != before {
			t.Errorf("%s: the read went to a chunkserver (%d reads) instead of using the one sent with the open", step, reads()-before)
		}
		if err := c.Release(ctx, ino); err != nil {
			t.Fatal(err)
		}
	}

	a, err := c.Create(ctx, proto.RootIno, "f", proto.Node{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	ino := a.Ino
	v1 := bytes.Repeat([]byte("one."), 1024)
	if err := c.WriteAt(ctx, ino, v1, 0); err != nil {
		t.Fatal(err)
	}
	open("written here", ino, uint64(len(v1)), true, v1)
	open("no guess", ino, 0, false, v1)

	// Rewritten in place by another client (same chunk, same version): the
	// read sent with the open sees it.
	v2 := bytes.Repeat([]byte("two."), 1024)
	if err := w.WriteAt(ctx, ino, v2, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx, ino); err != nil {
		t.Fatal(err)
	}
	open("rewritten elsewhere", ino, uint64(len(v1)), true, v2)

	// Grown elsewhere: the size the reader expected is wrong.
	v3 := append(bytes.Clone(v2), []byte("three")...)
	if err := w.WriteAt(ctx, ino, v3[len(v2):], int64(len(v2))); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx, ino); err != nil {
		t.Fatal(err)
	}
	open("grown elsewhere", ino, uint64(len(v2)), false, v3)

	// Truncated and rewritten elsewhere to the same size: a new chunk.
	if _, err := w.Setattr(ctx, ino, SetAttr{Valid: proto.SetSize, Size: 0}); err != nil {
		t.Fatal(err)
	}
	v4 := bytes.Repeat([]byte("4"), len(v3))
	if err := w.WriteAt(ctx, ino, v4, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx, ino); err != nil {
		t.Fatal(err)
	}
	open("new chunk elsewhere", ino, uint64(len(v3)), false, v4)
	open("after the new chunk's open", ino, uint64(len(v4)), true, v4)

	// A hint naming a chunk no chunkserver holds: the read fails, the hint
	// goes, the open and the read work.
	hint := c.hints.get(ino)
	bad := &proto.ChunkLoc{ID: hint.ID + 1000, Version: hint.Version, Servers: hint.Servers}
	c.hints.put(ino, bad)
	open("bad hint", ino, uint64(len(v4)), false, v4)
	if h := c.hints.get(ino); h == bad {
		t.Error("a hint whose read failed was kept")
	}
}

// TestSpeculationYieldsToOwnWrite: a read sent before this client changed
// file data is not kept, since it may hold data the change replaced.
func TestSpeculationYieldsToOwnWrite(t *testing.T) {
	var r readAhead
	pc := &raPieceData{n: 10, at: time.Now(), done: make(chan struct{})}
	at := r.changes.Load()
	r.changed(7)
	if r.adopt(1, pc, at) {
		t.Fatal("a read sent before a write of this client was kept")
	}
	if !r.adopt(1, pc, r.changes.Load()) {
		t.Fatal("a read sent after the last write was refused")
	}
}
