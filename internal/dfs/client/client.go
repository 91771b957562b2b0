// Package client is the DFS client library: namespace calls go to the master,
// file data goes straight to the chunkservers, writes down a replication chain.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// MaxIO is the largest data block sent in one chunkserver request.
const MaxIO = 4 << 20

// Client talks to one master and the chunkservers it names.
type Client struct {
	master *masterConn
	cache  *cache
	wb     writeBack
	ra     readAhead
	hints  hints       // chunk 0 locations for reads sent with an Open (speculate.go)
	offers offers      // chunk 0 offers of files created here (create.go)
	locs   locIndex    // cached chunk locations by inode (locindex.go)
	dirty  dirtyChunks // chunks written since each file's last Sync (sync.go; dfs-durability)
	locks  heldLocks   // locks to take again after a reconnect (locks.go; dfs-durability)
	// ctx lives as long as the client, for work done after a call returned
	// (deferred mtime updates).
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	peers map[string]*proto.Client

	// endsMu makes sending queued WriteEnds one at a time: the timer's
	// background send and a Setattr's or Flush's. A truncate must not pass a
	// WriteEnd the timer already took: that reply, made before the truncate,
	// would put the old size back in the cache after the truncate's.
	endsMu sync.Mutex
}

// Dial connects to the master's client port.
func Dial(ctx context.Context, masterAddr string) (*Client, error) {
	m, err := dialMaster(ctx, masterAddr)
	if err != nil {
		return nil, err
	}
	c := &Client{master: m, cache: newCache(), wb: writeBack{files: map[uint64]*fileQueue{}}, peers: map[string]*proto.Client{}}
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	return c, nil
}

// SetMasterRetry sets how long a call keeps retrying while the master is
// unreachable (DefaultMasterRetry unless set); 0 fails at once.
func (c *Client) SetMasterRetry(d time.Duration) { c.master.setRetry(d) }

// OnReconnect registers fn to run on every new connection to the master
// after the first (a master restart, a broken connection), before any call
// is retried on it: state the master keeps per client (locks, open files) is
// re-registered there by calls on mc, the new connection (not on c, whose
// calls wait for fn).
func (c *Client) OnReconnect(fn func(ctx context.Context, mc *proto.Client) error) {
	c.master.onReconnect(fn)
}

// Session returns the id under which the master deduplicates this client's
// retried namespace changes.
func (c *Client) Session() uint64 { return c.master.session }

// Close closes every connection.
func (c *Client) Close() error {
	// Record the last deferred mtimes, but do not wait for a master that
	// is gone.
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	c.waitAll(ctx)
	_ = c.sendEnds(ctx, 0)
	cancel()
	c.cancel()
	c.master.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.peers {
		p.Close()
	}
	return nil
}

func (c *Client) peer(ctx context.Context, addr string) (*proto.Client, error) {
	c.mu.Lock()
	p := c.peers[addr]
	c.mu.Unlock()
	if p != nil && p.Err() == nil {
		return p, nil
	}
	p, err := proto.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.peers[addr] = p
	c.mu.Unlock()
	return p, nil
}

func (c *Client) attrCall(ctx context.Context, t proto.MsgType, e *proto.Enc) (*proto.Attr, error) {
	b, err := c.master.Call(ctx, t, e.B)
	if err != nil {
		return nil, err
	}
	return c.attrReply(t, b)
}

// attrReply decodes an Attr reply to a t request and updates the caches.
func (c *Client) attrReply(t proto.MsgType, b []byte) (*proto.Attr, error) {
	var a proto.Attr
	if err := a.Decode(b); err != nil {
		return nil, fmt.Errorf("%s reply: %w", t, err)
	}
	if a.IsRegular() {
		if t == proto.MsgOpen {
			// Close-to-open: a new open asks the master again (and an
			// O_TRUNC open freed the chunks); the size is put below.
			c.forgetLocs(a.Ino)
			c.ra.drop(a.Ino)
		}
		c.cache.putSize(a.Ino, a.Size)
	}
	return &a, nil
}

// Lookup finds name in directory parent.
func (c *Client) Lookup(ctx context.Context, parent uint64, name string) (*proto.Attr, error) {
	var e proto.Enc
	e.U64(parent)
	e.String(name)
	return c.attrCall(ctx, proto.MsgLookup, &e)
}

// Getattr returns an inode's attributes (after recording the mtime of this
// client's recent writes to it).
func (c *Client) Getattr(ctx context.Context, ino uint64) (*proto.Attr, error) {
	if err := c.waitQueue(ctx, ino, false); err != nil {
		return nil, err
	}
	if err := c.sendEnds(ctx, ino); err != nil {
		return nil, err
	}
	var e proto.Enc
	e.U64(ino)
	return c.attrCall(ctx, proto.MsgGetattr, &e)
}

// createRequest encodes the request of Create, CreateOpen and CreateOpenLoc.
func createRequest(parent uint64, name string, n proto.Node) proto.Enc {
	var e proto.Enc
	e.U64(parent)
	e.String(name)
	e.U32(n.Mode)
	e.U32(n.Uid)
	e.U32(n.Gid)
	e.U32(n.Rdev)
	e.String(n.Target)
	return e
}

// Create makes a file, directory, symlink or special file.
func (c *Client) Create(ctx context.Context, parent uint64, name string, n proto.Node) (*proto.Attr, error) {
	e := createRequest(parent, name, n)
	return c.attrCall(ctx, proto.MsgCreate, &e)
}

// Readdir lists a directory.
func (c *Client) Readdir(ctx context.Context, ino uint64) ([]proto.Dirent, error) {
	var e proto.Enc
	e.U64(ino)
	b, err := c.master.Call(ctx, proto.MsgReaddir, e.B)
	if err != nil {
		return nil, err
	}
	d := proto.NewDec(b)
	n := d.U32()
	if int(n) > len(b) {
		return nil, fmt.Errorf("readdir reply with %d entries: %w", n, proto.ErrShort)
	}
	out := make([]proto.Dirent, 0, n)
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		out = append(out, proto.Dirent{Name: d.String(), Ino: d.U64()})
	}
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("readdir reply: %w", err)
	}
	return out, nil
}

// Unlink removes a name (a directory if dir).
func (c *Client) Unlink(ctx context.Context, parent uint64, name string, dir bool) error {
	var e proto.Enc
	e.U64(parent)
	e.String(name)
	if dir {
		e.U8(1)
	} else {
		e.U8(0)
	}
	_, err := c.master.Call(ctx, proto.MsgUnlink, e.B)
	return err
}

// Info returns the cluster summary.
func (c *Client) Info(ctx context.Context) (*proto.Info, error) {
	b, err := c.master.Call(ctx, proto.MsgInfo, nil)
	if err != nil {
		return nil, err
	}
	var info proto.Info
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("info reply: %w", err)
	}
	return &info, nil
}

// chunkLoc returns chunk idx of ino for reading or writing, from the cache
// if it is fresh (cached reports whether it was).
func (c *Client) cachedChunkLoc(ctx context.Context, ino uint64, idx uint32, write bool) (loc *proto.ChunkLoc, cached bool, err error) {
	k := chunkKey{ino, idx}
	if loc := c.cache.loc(write, k); loc != nil {
		return loc, true, nil
	}
	loc, err = c.chunkLoc(ctx, ino, idx, write)
	if err == nil {
		c.putLoc(write, k, loc)
	}
	return loc, false, err
}

func (c *Client) chunkLoc(ctx context.Context, ino uint64, idx uint32, write bool) (*proto.ChunkLoc, error) {
	var e proto.Enc
	e.U64(ino)
	e.U32(idx)
	t := proto.MsgReadChunk
	if write {
		t = proto.MsgWriteChunk
	}
	b, err := c.master.Call(ctx, t, e.B)
	if err != nil {
		return nil, err
	}
	var loc proto.ChunkLoc
	if err := loc.Decode(b); err != nil {
		return nil, err
	}
	return &loc, nil
}

// WriteAt writes p at off of file ino through every replica of each chunk it
// touches, then records the new size. It returns only when every replica
// holds the data.
func (c *Client) WriteAt(ctx context.Context, ino uint64, p []byte, off int64) error {
	if err := c.waitQueue(ctx, ino, true); err != nil {
		return err
	}
	c.ra.changed(ino)
	// Again after the write: a piece fetched while it was on its way may
	// hold the old data.
	defer c.ra.changed(ino)
	return c.writeAt(ctx, ino, p, off)
}

func (c *Client) writeAt(ctx context.Context, ino uint64, p []byte, off int64) error {
	end := off + int64(len(p))
	all, start := p, off
	var offered *proto.ChunkLoc // the chunk 0 offer this write used (create.go)
	for len(p) > 0 {
		idx := uint32(off / proto.ChunkSize)
		in := off % proto.ChunkSize
		n := min(int64(len(p)), proto.ChunkSize-in)
		k := chunkKey{ino, idx}
		if o := c.offers.get(ino); o != nil && idx == 0 && c.cache.loc(true, k) == nil {
			if err := c.writeChunk(ctx, o, p[:n], in); err == nil {
				offered = o
				c.dirty.wrote(ino, idx, o) // for Sync (sync.go; dfs-durability)
				p, off = p[n:], off+n
				continue
			}
			// Refused (an expired offer's copies refuse writes) or a copy
			// failed: the usual path takes over.
			c.offers.drop(ino, o)
		}
		loc, cached, err := c.cachedChunkLoc(ctx, ino, idx, true)
		if err != nil {
			return fmt.Errorf("write inode %d chunk %d: %w", ino, idx, err)
		}
		if len(loc.Servers) == 0 {
			return fmt.Errorf("write inode %d chunk %d: %w", ino, idx, syscall.ENOSPC)
		}
		err = c.writeChunk(ctx, loc, p[:n], in)
		if err != nil && cached && !errors.Is(err, syscall.ENOSPC) {
			// The chunk may have moved on since it was cached: ask again.
			c.cache.dropLoc(k)
			if loc, _, err = c.cachedChunkLoc(ctx, ino, idx, true); err != nil {
				return fmt.Errorf("write inode %d chunk %d: %w", ino, idx, err)
			}
			err = c.writeChunk(ctx, loc, p[:n], in)
		}
		if err != nil {
			if loc, err = c.rewrite(ctx, ino, idx, p[:n], in, err); err != nil {
				return err
			}
			c.putLoc(true, k, loc)
		}
		c.noteWrite(ino, idx, loc) // for Sync (sync.go; dfs-durability)
		p, off = p[n:], off+n
	}
	now := time.Now().UnixNano()
	if offered != nil {
		// The size and the chunk are recorded together, before the write
		// returns, whether or not the write grew the file.
		_, err := c.writeEndChunk(ctx, ino, 0, offered, uint64(end), now)
		c.offers.drop(ino, offered)
		if err == nil {
			c.putLoc(true, chunkKey{ino, 0}, offered)
			return nil
		}
		if !errors.Is(err, syscall.ESTALE) {
			return err
		}
		// The file got another chunk 0 first, or the master forgot the
		// offer: the data goes again where the file keeps it.
		return c.writeAt(ctx, ino, all, start)
	}
	if size, ok := c.cache.size(ino); ok && uint64(end) <= size {
		// Inside the file: the mtime follows shortly, shared with other writes.
		c.cache.deferEnd(ino, uint64(end), now, c.flushEnds)
		return nil
	}
	_, err := c.writeEnd(ctx, ino, uint64(end), now)
	return err
}

// maxRewrites bounds how often one piece of a write is sent again (rewrite).
const maxRewrites = 8

// rewrite sends a piece of chunk idx again after its write failed with err,
// and returns the location it went to.
//
//   - ENOSPC: a full chunkserver refused the data before storing any of it;
//     the chunk is intact and the writer learns ENOSPC.
//   - ESTALE: the chunk moved to a newer version since the location was
//     given: another write of the same chunk (the write-back keeps many in
//     flight) recovered it first. The piece goes to the current copies;
//     recovering again would move the version under the other writes too.
//   - Anything else: a copy failed. The master moves the reachable copies to
//     a new version (recover) and the piece is written to them.
func (c *Client) rewrite(ctx context.Context, ino uint64, idx uint32, p []byte, off int64, err error) (*proto.ChunkLoc, error) {
	k := chunkKey{ino, idx}
	for try := 0; ; try++ {
		c.cache.dropLoc(k)
		if errors.Is(err, syscall.ENOSPC) || try == maxRewrites || ctx.Err() != nil {
			return nil, fmt.Errorf("write inode %d chunk %d (%d times again): %w", ino, idx, try, err)
		}
		if try > 0 { // let a recovery in progress finish
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("write inode %d chunk %d: %w (after %w)", ino, idx, ctx.Err(), err)
			case <-time.After(time.Duration(try) * 20 * time.Millisecond):
			}
		}
		var loc *proto.ChunkLoc
		var lerr error
		if errors.Is(err, syscall.ESTALE) {
			loc, _, lerr = c.cachedChunkLoc(ctx, ino, idx, true)
		} else {
			loc, lerr = c.recover(ctx, ino, idx)
		}
		if lerr != nil {
			return nil, fmt.Errorf("write inode %d chunk %d: %w (after %w)", ino, idx, lerr, err)
		}
		if err = c.writeChunk(ctx, loc, p, off); err == nil {
			return loc, nil
		}
	}
}

// writeEnd records a write's end and mtime at the master (the size grows to
// end if it was smaller).
func (c *Client) writeEnd(ctx context.Context, ino, end uint64, mtime int64) (*proto.Attr, error) {
	var e proto.Enc
	e.U64(ino)
	e.U64(end)
	e.I64(mtime)
	return c.attrCall(ctx, proto.MsgWriteEnd, &e)
}

// writeChunk sends the pieces of one chunk's write in parallel, each down the
// chain of replicas.
func (c *Client) writeChunk(ctx context.Context, loc *proto.ChunkLoc, p []byte, off int64) error {
	first, err := c.peer(ctx, loc.Servers[0])
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for len(p) > 0 {
		n := min(len(p), MaxIO)
		var e proto.Enc
		data := p[:n]
		(&proto.ChunkWrite{ID: loc.ID, Version: loc.Version, Offset: uint32(off), Chain: loc.Servers[1:], Data: data}).EncodeHead(&e)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := first.CallParts(ctx, proto.MsgChunkWrite, e.B, data); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
		p, off = p[n:], off+int64(n)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ReadAt reads up to len(p) bytes at off of file ino, stopping at the end of
// the file; a bad or unreachable copy is skipped for the next.
func (c *Client) ReadAt(ctx context.Context, ino uint64, p []byte, off int64) (int, error) {
	if err := c.waitQueue(ctx, ino, false); err != nil {
		return 0, err
	}
	size, ok := c.cache.size(ino)
	if !ok {
		a, err := c.Getattr(ctx, ino)
		if err != nil {
			return 0, err
		}
		size = a.Size
	}
	if off >= int64(size) {
		return 0, nil
	}
	p = p[:min(int64(len(p)), int64(size)-off)]
	total := len(p)
	if pieces := c.plan(ino, off, len(p), int64(size)); len(pieces) > 0 {
		n, err := c.readAhead(ctx, pieces, p, off)
		if err != nil {
			return n, err
		}
		p, off = p[n:], off+int64(n)
	}
	for len(p) > 0 {
		idx := uint32(off / proto.ChunkSize)
		in := off % proto.ChunkSize
		n := min(int64(len(p)), proto.ChunkSize-in)
		loc, cached, err := c.cachedChunkLoc(ctx, ino, idx, false)
		if err != nil {
			return total - len(p), fmt.Errorf("read inode %d chunk %d: %w", ino, idx, err)
		}
		err = c.readChunk(ctx, loc, p[:n], in)
		if err != nil && cached {
			// The chunk may have moved on since it was cached: ask again.
			c.cache.dropLoc(chunkKey{ino, idx})
			if loc, _, err = c.cachedChunkLoc(ctx, ino, idx, false); err == nil {
				err = c.readChunk(ctx, loc, p[:n], in)
			}
		}
		if err != nil {
			c.cache.dropLoc(chunkKey{ino, idx})
			return total - len(p), fmt.Errorf("read inode %d chunk %d: %w", ino, idx, err)
		}
		p, off = p[n:], off+n
	}
	return total, nil
}

func (c *Client) readChunk(ctx context.Context, loc *proto.ChunkLoc, p []byte, off int64) error {
	return c.readChunkFrom(ctx, loc, p, off, 0)
}

// readChunkFrom is readChunk trying the copies from the start-th (modulo
// their number) on.
func (c *Client) readChunkFrom(ctx context.Context, loc *proto.ChunkLoc, p []byte, off int64, start int) error {
	if loc.ID == 0 {
		clear(p)
		return nil
	}
	if len(loc.Servers) == 0 {
		return fmt.Errorf("chunk %016x v%d has no live copy: %w", loc.ID, loc.Version, syscall.EIO)
	}
	for len(p) > 0 {
		n := min(len(p), MaxIO)
		var e proto.Enc
		(&proto.ChunkRead{ID: loc.ID, Version: loc.Version, Offset: uint32(off), Length: uint32(n)}).Encode(&e)
		var errs []error
		done := false
		for i := range loc.Servers {
			addr := loc.Servers[(start+i)%len(loc.Servers)]
			s, err := c.peer(ctx, addr)
			var b []byte
			if err == nil {
				b, err = s.CallInto(ctx, proto.MsgChunkRead, e.B, p[:n])
			}
			if err == nil && len(b) != n {
				err = fmt.Errorf("chunk %016x read from %s: %d bytes, want %d: %w", loc.ID, addr, len(b), n, syscall.EIO)
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if &b[0] != &p[0] { // the reply did not go straight into p
				copy(p, b)
			}
			done = true
			break
		}
		if !done {
			return errors.Join(errs...)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// SetAttr selects the attributes Setattr changes; Valid holds proto.Set* bits.
type SetAttr struct {
	Valid          uint32
	Mode, Uid, Gid uint32
	Size           uint64
	Atime, Mtime   int64
}

// Setattr changes attributes (truncating a file when SetSize is set).
func (c *Client) Setattr(ctx context.Context, ino uint64, in SetAttr) (*proto.Attr, error) {
	var e proto.Enc
	e.U64(ino)
	e.U32(in.Valid)
	e.U32(in.Mode)
	e.U32(in.Uid)
	e.U32(in.Gid)
	e.U64(in.Size)
	e.I64(in.Atime)
	e.I64(in.Mtime)
	if err := c.waitQueue(ctx, ino, false); err != nil {
		return nil, err
	}
	if err := c.sendEnds(ctx, ino); err != nil {
		return nil, err
	}
	if in.Valid&proto.SetSize != 0 {
		c.offers.drop(ino, nil)
		c.cache.dropFile(ino) // a truncate frees chunks
		c.ra.changed(ino)
		defer c.ra.changed(ino)
	}
	return c.attrCall(ctx, proto.MsgSetattr, &e)
}

// Rename moves a name; flags may hold proto.RenameNoReplace.
func (c *Client) Rename(ctx context.Context, oldParent uint64, oldName string, newParent uint64, newName string, flags uint32) error {
	var e proto.Enc
	e.U64(oldParent)
	e.String(oldName)
	e.U64(newParent)
	e.String(newName)
	e.U32(flags)
	_, err := c.master.Call(ctx, proto.MsgRename, e.B)
	return err
}

// Link adds a hard link to ino.
func (c *Client) Link(ctx context.Context, ino, newParent uint64, newName string) (*proto.Attr, error) {
	var e proto.Enc
	e.U64(ino)
	e.U64(newParent)
	e.String(newName)
	return c.attrCall(ctx, proto.MsgLink, &e)
}

// ChunkLocation returns chunk idx of file ino with its live copies (ID 0 for a hole).
func (c *Client) ChunkLocation(ctx context.Context, ino uint64, idx uint32) (*proto.ChunkLoc, error) {
	return c.chunkLoc(ctx, ino, idx, false)
}

// Resolve walks a slash-separated path from the root.
func (c *Client) Resolve(ctx context.Context, path string) (*proto.Attr, error) {
	a, err := c.Getattr(ctx, proto.RootIno)
	for _, name := range strings.Split(path, "/") {
		if err != nil {
			return nil, err
		}
		if name == "" || name == "." {
			continue
		}
		a, err = c.Lookup(ctx, a.Ino, name)
	}
	return a, err
}

func (c *Client) recover(ctx context.Context, ino uint64, idx uint32) (*proto.ChunkLoc, error) {
	var e proto.Enc
	e.U64(ino)
	e.U32(idx)
	b, err := c.master.Call(ctx, proto.MsgRecoverChunk, e.B)
	if err != nil {
		return nil, err
	}
	var loc proto.ChunkLoc
	if err := loc.Decode(b); err != nil {
		return nil, err
	}
	return &loc, nil
}
