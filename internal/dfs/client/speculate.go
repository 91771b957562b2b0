package client

import (
	"sync"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// Speculative reads at open. Reading a small file costs an Open at the
// master and then a read at a chunkserver, one after the other: the copies
// to read from come in the Open's reply (proto.OpenLoc). When the client
// still knows where the file's chunk 0 was (hints: any location it was
// given, kept past CacheTTL) and the reader says how big it expects the file
// to be, OpenToRead sends the chunkserver read at the same time as the
// Open, and keeps what it read only if the Open's reply confirms it:
//
//   - the reply names the same chunk at the same version, and the file has
//     the expected size. A chunk keeps its id and version only while every
//     write since reached every copy (a failed copy makes the master move the
//     version), so any copy holding that version holds the chunk's data as of
//     the read; the read was sent after the open began, so it saw every write
//     that a close (which waits for every copy) finished before the open;
//   - no write or truncate of this client started since the read was sent
//     (readAhead.changes): its data may be older than this client's own
//     write.
//
// Anything else throws the read away; the file is then read as without a
// hint. A wrong hint costs a wasted chunkserver read, never wrong data.

// maxHints bounds the inodes with a remembered chunk 0 location; past it
// the hints start afresh.
const maxHints = 1 << 16

// hints holds the last known chunk 0 location of files.
type hints struct {
	mu sync.Mutex
	m  map[uint64]*proto.ChunkLoc
}

func (h *hints) put(ino uint64, loc *proto.ChunkLoc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil || len(h.m) >= maxHints {
		h.m = map[uint64]*proto.ChunkLoc{}
	}
	h.m[ino] = loc
}

func (h *hints) get(ino uint64) *proto.ChunkLoc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[ino]
}

// drop forgets ino's hint if it is still loc.
func (h *hints) drop(ino uint64, loc *proto.ChunkLoc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m[ino] == loc {
		delete(h.m, ino)
	}
}

// speculation is a read of the first size bytes of a file sent with its
// Open, from the copies of hint.
type speculation struct {
	ino     uint64
	size    uint64
	hint    *proto.ChunkLoc
	changes uint64 // readAhead.changes when the read was sent
	piece   *raPieceData
}

// speculate starts reading the first size bytes of ino from its hinted
// copies, if the reader expects a small file (size at most PrefetchMax),
// the open does not truncate, and no write of this client to the file is
// on its way. It returns nil when it starts nothing.
func (c *Client) speculate(ino uint64, flags uint32, size uint64) *speculation {
	if size == 0 || size > PrefetchMax || flags&proto.OpenTrunc != 0 || c.writesQueued(ino) {
		return nil
	}
	hint := c.hints.get(ino)
	if hint == nil {
		return nil
	}
	s := &speculation{ino: ino, size: size, hint: hint, changes: c.ra.changes.Load(),
		piece: &raPieceData{off: 0, n: int(size), at: time.Now(), done: make(chan struct{})}}
	go func() {
		if c.fetchFrom(hint, s.piece) != nil {
			c.hints.drop(ino, hint)
		}
	}()
	return s
}

// confirm keeps the speculative read as the file's read-ahead data if the
// Open's reply (attributes a, chunk 0 at loc) shows it read the right data.
func (s *speculation) confirm(c *Client, a *proto.Attr, loc *proto.ChunkLoc) {
	if s == nil || loc == nil || !a.IsRegular() || a.Size != s.size ||
		loc.ID != s.hint.ID || loc.Version != s.hint.Version {
		return
	}
	c.ra.adopt(s.ino, s.piece, s.changes)
}
