package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// Chunk offers (proto/offer.go): CreateOpenW asks the master to offer a
// chunk for the new file's index 0 along with the create, so that the first
// write of a small file goes straight to the chunkservers and the WriteEnd
// that follows binds the chunk (WriteEndChunk): two master round trips for
// create, write and close instead of three. An offer the client cannot use
// (the master forgot it, or another client gave the file a chunk 0 first)
// costs one more write of the same data through WriteChunk.

// offerTTL is how long the client uses an offer: half the master's
// (master.offerTTL), so that it does not write to an offer the master is
// about to drop.
const offerTTL = 30 * time.Second

type offer struct {
	loc *proto.ChunkLoc
	at  time.Time
}

// offers holds the chunk 0 offers of files this client created.
type offers struct {
	mu sync.Mutex
	m  map[uint64]offer
	// unsupported is set once the master answered CreateOpenLoc as an
	// unknown message (an older master): CreateOpenW then sends CreateOpen.
	unsupported atomic.Bool
}

func (o *offers) put(ino uint64, loc *proto.ChunkLoc) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[uint64]offer{}
	}
	o.m[ino] = offer{loc: loc, at: time.Now()}
}

// get returns ino's offer if it is young enough to use.
func (o *offers) get(ino uint64) *proto.ChunkLoc {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, ok := o.m[ino]
	if !ok {
		return nil
	}
	if time.Since(e.at) > offerTTL {
		delete(o.m, ino)
		return nil
	}
	return e.loc
}

// drop forgets ino's offer if it is loc (any offer if loc is nil).
func (o *offers) drop(ino uint64, loc *proto.ChunkLoc) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e, ok := o.m[ino]; ok && (loc == nil || e.loc == loc) {
		delete(o.m, ino)
	}
}

// CreateOpenW is CreateOpen for a file opened for writing: the master also
// offers a chunk for the file's first write. It falls back to CreateOpen
// with a master that does not know CreateOpenLoc.
func (c *Client) CreateOpenW(ctx context.Context, parent uint64, name string, n proto.Node) (*proto.Attr, error) {
	if c.offers.unsupported.Load() {
		return c.CreateOpen(ctx, parent, name, n)
	}
	e := createRequest(parent, name, n)
	b, err := c.master.Call(ctx, proto.MsgCreateOpenLoc, e.B)
	if isUnsupported(err) {
		c.offers.unsupported.Store(true)
		return c.CreateOpen(ctx, parent, name, n)
	}
	if err != nil {
		return nil, err
	}
	ab, loc, err := decodeOpenReply(b)
	if err != nil {
		return nil, fmt.Errorf("create-open reply: %w", err)
	}
	a, err := c.attrReply(proto.MsgCreateOpenLoc, ab)
	if err != nil {
		return nil, err
	}
	if loc != nil && a.IsRegular() && len(loc.Servers) > 0 {
		c.offers.put(a.Ino, loc)
	}
	return a, nil
}

// isUnsupported reports whether err is a master's answer to a message type
// it does not know (EIO, "...: unsupported message").
func isUnsupported(err error) bool {
	var er *proto.ErrorReply
	return errors.As(err, &er) && er.Errno == syscall.EIO && strings.HasSuffix(er.Message, "unsupported message")
}

// writeEndChunk records a write's end and mtime and binds the offered chunk
// loc as chunk idx of ino.
func (c *Client) writeEndChunk(ctx context.Context, ino uint64, idx uint32, loc *proto.ChunkLoc, end uint64, mtime int64) (*proto.Attr, error) {
	var e proto.Enc
	(&proto.WriteEndChunk{Ino: ino, Size: end, Mtime: mtime, Index: idx, ID: loc.ID, Version: loc.Version}).Encode(&e)
	return c.attrCall(ctx, proto.MsgWriteEndChunk, &e)
}
