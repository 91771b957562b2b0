package master

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// TestOfferTable: an offer is taken once and only by its file; offers older
// than offerTTL expire in offer order, a taken one does not.
func TestOfferTable(t *testing.T) {
	var tab offerTable
	t0 := time.Now()
	tab.put(&chunkOffer{id: 1, ino: 10, at: t0})
	tab.put(&chunkOffer{id: 2, ino: 11, at: t0.Add(time.Second)})
	tab.put(&chunkOffer{id: 3, ino: 12, at: t0.Add(2 * offerTTL)})
	if o := tab.take(1, 99); o != nil {
		t.Errorf("take by another file: got %+v, want nil", o)
	}
	if o := tab.take(1, 10); o == nil || o.id != 1 {
		t.Errorf("take: got %+v, want offer 1", o)
	}
	if o := tab.take(1, 10); o != nil {
		t.Errorf("second take: got %+v, want nil", o)
	}
	exp := tab.expired(t0.Add(offerTTL + 2*time.Second))
	if len(exp) != 1 || exp[0].id != 2 {
		t.Errorf("expired: got %d offers, want offer 2 only", len(exp))
	}
	if n := tab.len(); n != 1 {
		t.Errorf("offers left: got %d, want 1", n)
	}
}

// TestOfferExpiryDropsLocations: an expired offer leaves the location map
// and its servers are told to delete any copy.
func TestOfferExpiryDropsLocations(t *testing.T) {
	m, err := New(Config{Dir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.meta.Close()
	m.mu.Lock()
	m.addLocLocked(5, 1, "a:1")
	m.addLocLocked(5, 1, "b:1")
	m.mu.Unlock()
	m.offers.put(&chunkOffer{id: 5, ino: 2, servers: []string{"a:1", "b:1"}, at: time.Now().Add(-2 * offerTTL)})
	m.dropOffers(m.offers.expired(time.Now()))
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.locs[5]) != 0 {
		t.Errorf("locations of an expired offer: %v, want none", m.locs[5])
	}
	for _, a := range []string{"a:1", "b:1"} {
		if l := m.pendingDel[a]; len(l) != 1 || l[0] != (proto.ChunkRef{ID: 5, Version: 1}) {
			t.Errorf("deletions queued for %s: %v, want chunk 5 v1", a, l)
		}
	}
}

// FuzzCreateMessages feeds arbitrary payloads of CreateOpenLoc and
// WriteEndChunk to the master's handler: it must answer or refuse, never
// crash.
func FuzzCreateMessages(f *testing.F) {
	m, err := New(Config{Dir: f.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	m.posix.reopen = time.Millisecond
	f.Cleanup(func() {
		m.wg.Wait()
		m.meta.Close()
	})
	if _, err := m.meta.Create(proto.RootIno, "f", meta.Node{Mode: syscall.S_IFREG | 0o644}); err != nil {
		f.Fatal(err)
	}
	types := []proto.MsgType{proto.MsgCreateOpenLoc, proto.MsgWriteEndChunk}
	var e proto.Enc
	e.U64(proto.RootIno)
	e.String("new")
	e.U32(syscall.S_IFREG | 0o644)
	e.U32(0)
	e.U32(0)
	e.U32(0)
	e.String("")
	f.Add(uint8(0), e.B)
	e = proto.Enc{}
	(&proto.WriteEndChunk{Ino: 2, Size: 4096, ID: 9, Version: 1}).Encode(&e)
	f.Add(uint8(1), e.B)
	f.Add(uint8(1), binary.BigEndian.AppendUint64(nil, 2))
	f.Fuzz(func(t *testing.T, ti uint8, b []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, handled, _ := m.handlePOSIX(ctx, &proto.Frame{Type: types[int(ti)%len(types)], Payload: b})
		if !handled {
			t.Fatalf("message %s not handled", types[int(ti)%len(types)])
		}
	})
}
