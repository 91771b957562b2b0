package master

import (
	"context"
	"sync"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// Chunk offers (CreateOpenLoc, WriteEndChunk; see proto/offer.go).
//
// CreateOpenLoc reserves a chunk id in the create's own metadata commit and
// places it like a new chunk (the copies' servers enter the location map),
// but the chunk map gets it only when the writer's WriteEndChunk binds it,
// in the commit that records the size. A file created and never written
// therefore has no chunk, as with CreateOpen. An offer not bound within
// offerTTL is dropped: its locations are forgotten and its servers told to
// delete any copy a write made (with the other stale copies, at their next
// heartbeat). A write to it after that is refused by the chunkserver (the
// deletion leaves a tombstone) or its bind is refused by the master, and the
// client writes through WriteChunk instead. Offers live in memory only: a
// restarted master refuses the binds of its predecessor's offers the same way.

// offerTTL is how long an offer may wait for its bind: far longer than a
// small file's create, write and close take, shorter than a client keeps it
// (client.offerTTL is half of it).
const offerTTL = time.Minute

type chunkOffer struct {
	id      uint64
	ino     uint64
	servers []string
	at      time.Time
}

// offerTable holds the offers not bound yet; the zero value is ready.
type offerTable struct {
	mu    sync.Mutex
	byID  map[uint64]*chunkOffer
	queue []*chunkOffer // in offer order (at ascending), for expiry
}

func (t *offerTable) put(o *chunkOffer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID == nil {
		t.byID = map[uint64]*chunkOffer{}
	}
	t.byID[o.id] = o
	t.queue = append(t.queue, o)
}

// take removes and returns the offer of chunk id made to file ino, or nil.
func (t *offerTable) take(id, ino uint64) *chunkOffer {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.byID[id]
	if o == nil || o.ino != ino {
		return nil
	}
	delete(t.byID, id)
	return o
}

// expired removes and returns the offers made before now-offerTTL.
func (t *offerTable) expired(now time.Time) []*chunkOffer {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*chunkOffer
	i := 0
	for ; i < len(t.queue) && now.Sub(t.queue[i].at) >= offerTTL; i++ {
		o := t.queue[i]
		if t.byID[o.id] == o {
			delete(t.byID, o.id)
			out = append(out, o)
		}
	}
	t.queue = t.queue[i:]
	if len(t.queue) == 0 {
		t.queue = nil // let the old backing array go
	}
	return out
}

// len returns the offers waiting for their bind (for tests).
func (t *offerTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// createOpenLoc answers CreateOpenLoc: CreateOpen, plus an offer of a new
// chunk for the file's index 0 if chunkservers can take it.
func (m *Master) createOpenLoc(ctx context.Context, payload []byte) ([]byte, error) {
	d := proto.NewDec(payload)
	parent, name := d.U64(), d.String()
	n := meta.Node{Mode: d.U32(), Uid: d.U32(), Gid: d.U32(), Rdev: d.U32(), Target: d.String()}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	s, err := m.sessionOf(ctx)
	if err != nil {
		return nil, err
	}
	a, id, err := m.meta.CreateOpenReserve(parent, name, n)
	if err != nil {
		return nil, err
	}
	s.opened(a.Ino)
	if exp := m.offers.expired(time.Now()); len(exp) > 0 {
		m.dropOffers(exp)
	}
	var ae, le, e proto.Enc
	a.Encode(&ae)
	if id != 0 {
		// A placement failure (no chunkserver with room) is no failure of
		// the create: the file gets no offer, and its first write asks
		// WriteChunk, which reports it.
		c := meta.Chunk{ID: id, Version: 1}
		if servers, err := m.place(c, int(a.Goal)); err == nil && len(servers) > 0 {
			m.offers.put(&chunkOffer{id: id, ino: a.Ino, servers: servers, at: time.Now()})
			(&proto.ChunkLoc{ID: id, Version: c.Version, Servers: servers}).Encode(&le)
		}
	}
	e.Bytes(ae.B)
	e.Bytes(le.B)
	return e.B, nil
}

// writeEndChunk answers WriteEndChunk: the size and mtime, and the bind of
// the offered chunk, in one metadata commit.
func (m *Master) writeEndChunk(payload []byte) ([]byte, error) {
	var w proto.WriteEndChunk
	if err := w.Decode(payload); err != nil {
		return nil, err
	}
	o := m.offers.take(w.ID, w.Ino)
	fresh := o != nil && w.Index == 0 && w.Version == 1
	a, err := m.meta.BindChunk(w.Ino, w.Index, meta.Chunk{ID: w.ID, Version: w.Version}, w.Size, w.Mtime, fresh)
	if err != nil {
		if o != nil {
			m.dropOffers([]*chunkOffer{o})
		}
		return nil, err
	}
	// The writer caches the chunk's location for further writes, as after a
	// WriteChunk: the replication loop and a truncate treat it as written.
	m.mu.Lock()
	m.lastWrite[w.ID] = time.Now()
	m.mu.Unlock()
	var e proto.Enc
	a.Encode(&e)
	return e.B, nil
}

// dropOffers forgets offers that will never be bound and queues the deletion
// of any copy a write made of them.
func (m *Master) dropOffers(offers []*chunkOffer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range offers {
		addrs := map[string]bool{}
		for _, a := range o.servers {
			addrs[a] = true
		}
		for a := range m.locs[o.id] {
			addrs[a] = true
		}
		for a := range addrs {
			m.pendingDel[a] = append(m.pendingDel[a], proto.ChunkRef{ID: o.id, Version: max(1, m.vers[o.id])})
		}
		delete(m.locs, o.id)
		delete(m.vers, o.id)
	}
}
