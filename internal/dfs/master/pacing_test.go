package master

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// TestDeletesPaced: a chunkserver with more pending deletions than
// MaxDeletesPerBeat gets them over several heartbeats, each copy once and
// in the order they were freed.
func TestDeletesPaced(t *testing.T) {
	m, err := New(Config{Dir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.meta.Close()
	const addr = "127.0.0.1:1"
	const pending = 2*MaxDeletesPerBeat + 10
	m.mu.Lock()
	for i := 1; i <= pending; i++ {
		m.pendingDel[addr] = append(m.pendingDel[addr], proto.ChunkRef{ID: uint64(i), Version: 1})
	}
	m.mu.Unlock()

	beat := func(typ proto.MsgType, r proto.Register) []proto.ChunkRef {
		t.Helper()
		var e proto.Enc
		r.Encode(&e)
		out, err := m.handleChunkserver(context.Background(), &proto.Frame{Type: typ, Payload: e.B})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		var l proto.ChunkList
		if err := l.Decode(out); err != nil {
			t.Fatalf("%s reply: %v", typ, err)
		}
		return l.Chunks
	}
	var got []proto.ChunkRef
	for i, want := range []int{MaxDeletesPerBeat, MaxDeletesPerBeat, 10, 0} {
		l := beat(proto.MsgHeartbeat, proto.Register{Addr: addr})
		if len(l) != want {
			t.Fatalf("heartbeat %d: got %d deletions, want %d", i+1, len(l), want)
		}
		got = append(got, l...)
	}
	for i, c := range got {
		if c.ID != uint64(i+1) {
			t.Fatalf("deletion %d: got chunk %d, want %d (each once, in order)", i, c.ID, i+1)
		}
	}
}
