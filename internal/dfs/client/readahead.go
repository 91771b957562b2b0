package client

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// Read-ahead: once a file is read sequentially (each read starting where the
// previous one ended), ReadAt keeps the next raWindow bytes in flight, in
// raPiece pieces fetched in parallel and spread over the chunk's copies, so
// a sequential reader finds its data here instead of waiting for one round
// trip per kernel read. Fetched data is used only while it is younger than
// CacheTTL (the staleness the kernel already allows), never across a write of
// this client to the file (WriteAt, WriteAtAsync and Setattr drop it, and no
// piece is fetched while writes of the file are queued) nor across an open.

const (
	raPiece  = 1 << 20 // divides proto.ChunkSize: a piece never spans two chunks
	raWindow = 8 << 20
	raFiles  = 256 // files whose read position is tracked; more resets the table
)

type raPieceData struct {
	off  int64
	n    int
	at   time.Time
	done chan struct{}
	data []byte
	err  error
}

type raFile struct {
	next   int64 // where a sequential read continues
	streak int   // reads in a row that continued the previous one
	pieces map[int64]*raPieceData
}

type readAhead struct {
	mu    sync.Mutex
	files map[uint64]*raFile
	// changes counts this client's changes of file data (writes and
	// truncates, at their start and end): a read sent before one may hold
	// data the change replaced (speculate.go).
	changes atomic.Uint64
}

// drop forgets ino's read-ahead data (the file was reopened).
func (r *readAhead) drop(ino uint64) {
	r.mu.Lock()
	delete(r.files, ino)
	r.mu.Unlock()
}

// changed forgets ino's read-ahead data because this client is changing
// or has changed the file's data.
func (r *readAhead) changed(ino uint64) {
	r.mu.Lock()
	r.changes.Add(1)
	delete(r.files, ino)
	r.mu.Unlock()
}

// adopt makes pc, a read of the start of ino sent when changes stood at
// changes, ino's read-ahead data, unless this client changed file data
// since; it reports whether it did.
func (r *readAhead) adopt(ino uint64, pc *raPieceData, changes uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changes.Load() != changes {
		return false
	}
	if r.files == nil || len(r.files) >= raFiles {
		r.files = map[uint64]*raFile{}
	}
	r.files[ino] = &raFile{next: -1, pieces: map[int64]*raPieceData{pc.off: pc}}
	return true
}

// plan records a read of n bytes at off of ino (a file of size bytes) and,
// if it continues the previous read, starts fetching the pieces of the
// window ahead that are not in flight yet. It returns the pieces that cover
// the start of the read, in order (none for a non-sequential read).
func (c *Client) plan(ino uint64, off int64, n int, size int64) []*raPieceData {
	r := &c.ra
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.files == nil {
		r.files = map[uint64]*raFile{}
	}
	f := r.files[ino]
	if f == nil {
		if len(r.files) >= raFiles {
			clear(r.files)
		}
		f = &raFile{next: -1, pieces: map[int64]*raPieceData{}}
		r.files[ino] = f
	}
	// A read near where the previous one ended continues the stream: the
	// kernel sends its own read-ahead requests in parallel, so they may
	// arrive slightly out of order. Two in a row (or a read from offset 0)
	// start the read-ahead; anything else stops it.
	near := f.next >= 0 && off >= f.next-raPiece && off <= f.next+raPiece
	switch {
	case off == 0:
		f.streak = 2
	case near:
		f.streak++
	default:
		f.streak = 0
	}
	if near {
		f.next = max(f.next, off+int64(n))
	} else {
		f.next = off + int64(n)
	}
	base := off / raPiece * raPiece
	for po := range f.pieces {
		if po < base-2*raPiece || f.streak == 0 {
			delete(f.pieces, po)
		}
	}
	if f.streak < 2 || c.writesQueued(ino) {
		return nil
	}
	now := time.Now()
	end := min(size, base+raWindow)
	var cover []*raPieceData
	for po := base; po < end; po += raPiece {
		pc := f.pieces[po]
		if pc != nil && pc.n < int(min(raPiece, size-po)) {
			pc = nil // the file grew past a short last piece
		}
		if pc != nil && now.Sub(pc.at) > CacheTTL {
			pc = nil
		}
		if pc == nil {
			pc = &raPieceData{off: po, n: int(min(raPiece, size-po)), at: now, done: make(chan struct{})}
			f.pieces[po] = pc
			go c.fetch(ino, pc)
		}
		if po < off+int64(n) {
			cover = append(cover, pc)
		}
	}
	return cover
}

// PrefetchMax is the largest file whose data Prefetch fetches.
const PrefetchMax = 128 << 10

// Prefetch starts fetching the data of file ino, of size bytes, if it is at
// most PrefetchMax: called right after an open for reading, it lets the
// chunkserver's read run while the open returns and the program gets to
// its first read, which then finds the data on its way (a read-ahead piece,
// used as plan uses them). A larger file is left to the read-ahead of its
// reads: its reader may want only part of it.
func (c *Client) Prefetch(ino uint64, size uint64) {
	if size == 0 || size > PrefetchMax {
		return
	}
	c.plan(ino, 0, 0, int64(size))
}

// fetch reads one piece, starting with the copy its position in the chunk
// selects, so that parallel pieces spread over the copies.
func (c *Client) fetch(ino uint64, pc *raPieceData) {
	idx := uint32(pc.off / proto.ChunkSize)
	loc, _, err := c.cachedChunkLoc(c.ctx, ino, idx, false)
	if err != nil {
		pc.err = err
		close(pc.done)
		return
	}
	if c.fetchFrom(loc, pc) != nil {
		c.cache.dropLoc(chunkKey{ino, idx})
	}
}

// fetchFrom reads piece pc from the copies of loc and marks it done.
func (c *Client) fetchFrom(loc *proto.ChunkLoc, pc *raPieceData) error {
	defer close(pc.done)
	buf := make([]byte, pc.n)
	start := int(pc.off % proto.ChunkSize / raPiece)
	if err := c.readChunkFrom(c.ctx, loc, buf, pc.off%proto.ChunkSize, start); err != nil {
		pc.err = err
		return err
	}
	pc.data = buf
	return nil
}

// readAhead copies into p (the read at off) what the pieces hold, in order,
// and returns how many bytes it copied: a prefix of p, short if a piece failed
// or ended (the caller reads the rest directly).
func (c *Client) readAhead(ctx context.Context, pieces []*raPieceData, p []byte, off int64) (int, error) {
	done := 0
	for _, pc := range pieces {
		if off+int64(done) < pc.off || off+int64(done) >= pc.off+int64(pc.n) {
			break
		}
		select {
		case <-pc.done:
		case <-ctx.Done():
			return done, ctx.Err()
		}
		if pc.err != nil {
			break
		}
		done += copy(p[done:], pc.data[off+int64(done)-pc.off:])
		if done == len(p) {
			break
		}
	}
	return done, nil
}
