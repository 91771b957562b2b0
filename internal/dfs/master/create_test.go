package master_test

import (
	"bytes"
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// readBack opens ino on cl (close-to-open) and returns its whole content.
func readBack(t *testing.T, cl *client.Client, ino uint64) []byte {
	t.Helper()
	ctx := t.Context()
	a, err := cl.Open(ctx, ino, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Release(ctx, ino)
	buf := make([]byte, a.Size+10)
	n, err := cl.ReadAt(ctx, ino, buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// TestCreateOfferedChunk: a file made with CreateOpenW gets its first write
// to the chunk the master offered with the create, with no WriteChunk, and
// the WriteEndChunk that records the size binds the chunk: another client
// opening the file afterwards reads the data from goal copies. A file never
// written gets no chunk.
func TestCreateOfferedChunk(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := t.Context()
	w, r := c.client(), c.client()
	a, err := w.CreateOpenW(ctx, proto.RootIno, "f", regular(0o644))
	if err != nil {
		t.Fatal(err)
	}
	allocs, binds := c.m.Requests(proto.MsgWriteChunk), c.m.Requests(proto.MsgWriteEndChunk)
	data := randomBytes(4096)
	if err := w.WriteAt(ctx, a.Ino, data, 0); err != nil {
		t.Fatal(err)
	}
	if got := c.m.Requests(proto.MsgWriteChunk) - allocs; got != 0 {
		t.Errorf("WriteChunk requests for the first write: got %d, want 0", got)
	}
	if got := c.m.Requests(proto.MsgWriteEndChunk) - binds; got != 1 {
		t.Errorf("WriteEndChunk requests: got %d, want 1", got)
	}
	if got := readBack(t, r, a.Ino); !bytes.Equal(got, data) {
		t.Fatalf("other client read %d bytes, not the %d written", len(got), len(data))
	}
	// A second write reuses the bound chunk (cached), still no WriteChunk.
	more := randomBytes(1000)
	if err := w.WriteAt(ctx, a.Ino, more, 4096); err != nil {
		t.Fatal(err)
	}
	if got := c.m.Requests(proto.MsgWriteChunk) - allocs; got != 0 {
		t.Errorf("WriteChunk requests after a second write: got %d, want 0", got)
	}
	if got := readBack(t, r, a.Ino); !bytes.Equal(got, append(append([]byte(nil), data...), more...)) {
		t.Fatalf("other client read %d bytes after the second write, want %d", len(got), len(data)+len(more))
	}

	empty, err := w.CreateOpenW(ctx, proto.RootIno, "empty", regular(0o644))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Release(ctx, empty.Ino); err != nil {
		t.Fatal(err)
	}
	info, err := c.m.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Chunks.Total != 1 || info.Chunks.OK != 1 {
		t.Errorf("chunks: got %+v, want 1 chunk at goal (none for the empty file)", info.Chunks)
	}
	if files := chunkFiles(t, c.dir); len(files) != 2 {
		t.Errorf("chunk files: got %d, want 2 (goal 2 of one chunk): %v", len(files), files)
	}
}

// TestCreateOfferStale: when the file got a chunk 0 from another client
// before the offer's bind, the bind is refused and the writer writes its
// data again to the file's chunk; the offered chunk's copies are deleted.
func TestCreateOfferStale(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := t.Context()
	w, r := c.client(), c.client()
	a, err := w.CreateOpenW(ctx, proto.RootIno, "g", regular(0o644))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteAt(ctx, a.Ino, randomBytes(4096), 0); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(5000)
	if err := w.WriteAt(ctx, a.Ino, data, 0); err != nil {
		t.Fatal(err)
	}
	if got := readBack(t, r, a.Ino); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, not the %d the last writer wrote", len(got), len(data))
	}
	info, err := c.m.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Chunks.Total != 1 {
		t.Errorf("chunks: got %d, want 1", info.Chunks.Total)
	}
	// The refused offer's copies go with the chunkservers' next heartbeat.
	c.waitFor(5e9, "deletion of the refused offer's copies", func() bool { return len(chunkFiles(t, c.dir)) == 2 })
}

// TestCreateOfferAfterRestart: a restarted master knows nothing of its
// predecessor's offers; the bind is refused and the data written again
// through WriteChunk, so nothing acknowledged is lost.
func TestCreateOfferAfterRestart(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := t.Context()
	w := c.client()
	a, err := w.CreateOpenW(ctx, proto.RootIno, "h", regular(0o644))
	if err != nil {
		t.Fatal(err)
	}
	c.m.Close()
	c.startMaster()
	c.waitServers(3)
	data := randomBytes(3000)
	if err := w.WriteAt(ctx, a.Ino, data, 0); err != nil {
		t.Fatal(err)
	}
	if got := c.m.Requests(proto.MsgWriteChunk); got == 0 {
		t.Errorf("WriteChunk requests after the refused bind: got 0, want the rewrite's")
	}
	if got := readBack(t, c.client(), a.Ino); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(data))
	}
}
