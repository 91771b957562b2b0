package fusefs

import (
	"context"
	"math"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

var (
	_ fs.NodeGetxattrer    = (*Node)(nil)
	_ fs.NodeSetxattrer    = (*Node)(nil)
	_ fs.NodeListxattrer   = (*Node)(nil)
	_ fs.NodeRemovexattrer = (*Node)(nil)
	_ fs.NodeStatfser      = (*Node)(nil)
	_ fs.NodeAllocater     = (*Node)(nil)
	_ fs.NodeGetlker       = (*Node)(nil)
	_ fs.NodeSetlker       = (*Node)(nil)
	_ fs.NodeSetlkwer      = (*Node)(nil)
)

// Kernel FUSE flags go-fuse does not name.
const (
	lkFlock            = 1 << 0 // fuse_lk_in.lk_flags FUSE_LK_FLOCK
	releaseFlockUnlock = 1 << 1 // fuse_release_in.release_flags FUSE_RELEASE_FLOCK_UNLOCK
)

// Linux fallocate modes.
const (
	fallocKeepSize = 0x01
)

// statfsBlock is the block size statfs reports.
const statfsBlock = 64 << 10

// mount is the state one mount shares among its nodes: the queue of handle
// releases and the lock owners that took locks here.
type mount struct {
	c *client.Client

	mu       sync.Mutex
	open     map[uint64]int // open handles per inode, as counted in the master
	releases []uint64
	sending  bool
	owners   map[lockKey]bool // (inode, owner, kind) that took a lock
}

type lockKey struct {
	ino, owner uint64
	kind       uint8
}

func newMount(c *client.Client) *mount {
	m := &mount{c: c, open: map[uint64]int{}, owners: map[lockKey]bool{}}
	c.OnReconnect(m.reopen)
	return m
}

func (m *mount) opened(ino uint64) {
	m.mu.Lock()
	m.open[ino]++
	m.mu.Unlock()
}

// reopen counts this mount's open handles again on a new connection to the
// master (the old connection's ended with it). A file unlinked meanwhile
// is gone: its handles fail from then on. The client library takes the
// locks again (client/locks.go), so the lock owners stay recorded here for
// their unlock at close.
func (m *mount) reopen(ctx context.Context, mc *proto.Client) error {
	m.mu.Lock()
	open := make(map[uint64]int, len(m.open))
	for ino, n := range m.open {
		open[ino] = n
	}
	m.mu.Unlock()
	for ino, n := range open {
		var e proto.Enc
		e.U64(ino)
		e.U32(0)
		for ; n > 0; n-- {
			if _, err := mc.Call(ctx, proto.MsgOpen, e.B); err != nil {
				break
			}
		}
	}
	return nil
}

// release queues a handle release; one sender batches what accumulates
// while a Release message is in flight. The kernel sends RELEASE after
// close(2) returned, so nobody waits for it.
func (m *mount) release(ctx context.Context, ino uint64) {
	m.mu.Lock()
	if m.open[ino]--; m.open[ino] <= 0 {
		delete(m.open, ino)
	}
	m.releases = append(m.releases, ino)
	if m.sending {
		m.mu.Unlock()
		return
	}
	m.sending = true
	m.mu.Unlock()
	base := context.WithoutCancel(ctx)
	go func() {
		for {
			m.mu.Lock()
			batch := m.releases
			m.releases = nil
			if len(batch) == 0 {
				m.sending = false
				m.mu.Unlock()
				return
			}
			m.mu.Unlock()
			// A failure means the connection is gone, and with it the
			// master's record of this client's handles.
			ctx, cancel := context.WithTimeout(base, 30*time.Second)
			_ = m.c.Release(ctx, batch...)
			cancel()
		}
	}()
}

// rawFS passes requests to go-fuse's node bridge, releasing file locks
// first: POSIX locks of the flushing owner on FLUSH (every close), flock
// locks of the open file on its last RELEASE. go-fuse's node API does not
// show the lock owner of these requests.
type rawFS struct {
	fuse.RawFileSystem
	m *mount
}

func (r *rawFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	st := r.RawFileSystem.Flush(cancel, in)
	r.m.unlockOwner(&fuse.Context{Caller: in.Caller, Cancel: cancel}, in.NodeId, in.LockOwner, proto.LockPOSIX)
	return st
}

func (r *rawFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	if in.ReleaseFlags&releaseFlockUnlock != 0 {
		r.m.unlockOwner(&fuse.Context{Caller: in.Caller, Cancel: cancel}, in.NodeId, in.LockOwner, proto.LockFlock)
	}
	r.RawFileSystem.Release(cancel, in)
}

func (m *mount) unlockOwner(ctx context.Context, ino, owner uint64, kind uint8) {
	k := lockKey{ino, owner, kind}
	m.mu.Lock()
	held := m.owners[k]
	delete(m.owners, k)
	m.mu.Unlock()
	if held {
		_ = m.c.Setlk(context.WithoutCancel(ctx), &proto.Lock{Ino: ino, Owner: owner, End: math.MaxInt64, Type: proto.LockUnlock, Kind: kind}, false)
	}
}

// Getxattr reads an extended attribute; with an empty dest it returns the
// size only.
//
// The kernel asks for security.capability before every write(2) (to drop
// file capabilities on a write). The answer "none" is kept for cacheTTL, as
// attributes are, so a stream of writes costs no master round trips.
func (n *Node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	caps := attr == capsXattr
	if caps {
		n.capsMu.Lock()
		known := time.Now().Before(n.noCapsUntil)
		n.capsMu.Unlock()
		if known {
			return 0, syscall.ENODATA
		}
	}
	v, err := n.c.Getxattr(ctx, n.ino, attr)
	if err != nil {
		if caps && errno(err) == syscall.ENODATA {
			n.setNoCaps()
		}
		return 0, errno(err)
	}
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// capsXattr is the attribute holding file capabilities.
const capsXattr = "security.capability"

func (n *Node) setNoCaps() {
	n.capsMu.Lock()
	n.noCapsUntil = time.Now().Add(cacheTTL)
	n.capsMu.Unlock()
}

// Setxattr sets an extended attribute (XATTR_CREATE, XATTR_REPLACE).
func (n *Node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	if attr == capsXattr {
		n.capsMu.Lock()
		n.noCapsUntil = time.Time{}
		n.capsMu.Unlock()
	}
	return errno(n.c.Setxattr(ctx, n.ino, attr, data, flags))
}

// Listxattr lists the attribute names, each ended by a NUL byte.
func (n *Node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	names, err := n.c.Listxattr(ctx, n.ino)
	if err != nil {
		return 0, errno(err)
	}
	size := 0
	for _, s := range names {
		size += len(s) + 1
	}
	if len(dest) == 0 {
		return uint32(size), 0
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	off := 0
	for _, s := range names {
		off += copy(dest[off:], s)
		dest[off] = 0
		off++
	}
	return uint32(size), 0
}

// Removexattr deletes an extended attribute.
func (n *Node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	return errno(n.c.Removexattr(ctx, n.ino, attr))
}

// Statfs reports the live chunkservers' raw space (all copies count, as in
// MooseFS) and the inodes in use; the metadata store sets no inode limit,
// so the free inode count is a large constant.
func (n *Node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	st, err := n.c.Statfs(ctx)
	if err != nil {
		return errno(err)
	}
	out.Bsize, out.Frsize = statfsBlock, statfsBlock
	out.Blocks = st.Total / statfsBlock
	out.Bfree = st.Free / statfsBlock
	out.Bavail = out.Bfree
	out.Ffree = 1 << 32
	out.Files = st.Inodes + out.Ffree
	out.NameLen = 255
	return 0
}

// Allocate implements fallocate modes 0 (extend the size) and
// FALLOC_FL_KEEP_SIZE: both fail with ENOSPC when the live chunkservers lack
// room for the range times the file's goal. Space is not reserved: chunks
// are allocated when written. Other modes (punching or zeroing holes,
// collapsing or inserting ranges) answer EOPNOTSUPP.
func (n *Node) Allocate(ctx context.Context, _ fs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	if mode&^fallocKeepSize != 0 {
		return syscall.EOPNOTSUPP
	}
	if err := n.flush(ctx); err != 0 {
		return err
	}
	a, err := n.c.Getattr(ctx, n.ino)
	if err != nil {
		return errno(err)
	}
	if !a.IsRegular() {
		return syscall.ENODEV
	}
	end := off + size
	if end > math.MaxInt64 || end < off {
		return syscall.EFBIG
	}
	if end > a.Size {
		st, err := n.c.Statfs(ctx)
		if err != nil {
			return errno(err)
		}
		if need := (end - a.Size) * uint64(max(a.Goal, 1)); need > st.Free {
			return syscall.ENOSPC
		}
	}
	if mode&fallocKeepSize != 0 || end <= a.Size {
		return 0
	}
	_, err = n.c.Setattr(ctx, n.ino, client.SetAttr{Valid: proto.SetSize, Size: end})
	return errno(err)
}

func (n *Node) lock(owner uint64, lk *fuse.FileLock, flags uint32) *proto.Lock {
	l := &proto.Lock{Ino: n.ino, Owner: owner, Start: lk.Start, End: lk.End, Type: lk.Typ, Pid: lk.Pid}
	if flags&lkFlock != 0 {
		l.Kind = proto.LockFlock
		l.Start, l.End = 0, math.MaxInt64
	}
	if l.End > math.MaxInt64 {
		l.End = math.MaxInt64
	}
	return l
}

// Getlk returns a lock held by another owner (on any mount) that conflicts
// with lk, or lk with type F_UNLCK.
func (n *Node) Getlk(ctx context.Context, _ fs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	c, err := n.c.Getlk(ctx, n.lock(owner, lk, flags))
	if err != nil {
		return errno(err)
	}
	*out = fuse.FileLock{Start: c.Start, End: c.End, Typ: c.Type, Pid: c.Pid}
	return 0
}

// Setlk takes, converts or releases a lock; EAGAIN if another owner holds a
// conflicting one.
func (n *Node) Setlk(ctx context.Context, _ fs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	return n.setlk(ctx, n.lock(owner, lk, flags), false)
}

// Setlkw waits until the lock can be taken or the request is interrupted.
func (n *Node) Setlkw(ctx context.Context, _ fs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return n.setlk(ctx, n.lock(owner, lk, flags), true)
}

func (n *Node) setlk(ctx context.Context, l *proto.Lock, wait bool) syscall.Errno {
	if l.Type != proto.LockUnlock {
		// Record the owner first so that a close racing the reply still
		// releases what the master may have granted.
		n.m.mu.Lock()
		n.m.owners[lockKey{l.Ino, l.Owner, l.Kind}] = true
		n.m.mu.Unlock()
	}
	for {
		err := errno(n.c.Setlk(ctx, l, wait))
		if err == 0 {
			return 0 // granted (even if interrupted meanwhile: the lock is held)
		}
		if wait && ctx.Err() != nil {
			return syscall.EINTR
		}
		if err != syscall.EAGAIN || !wait {
			return err
		}
	}
}
