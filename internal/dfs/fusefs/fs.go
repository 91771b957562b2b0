// Package fusefs mounts the DFS through the kernel's FUSE with go-fuse's fs
// API. Namespace operations go to the master through the client library;
// sequential writes are buffered per file (write-back, up to WriteBuffer
// bytes) and sent to the chunkservers in large requests.
//
// Every open file handle is counted in the master (Open/Create and Release),
// so a file unlinked while open keeps working until its last close. Kernel
// node ids are the DFS inode numbers (ExternalNodeID), which lets the raw
// request wrapper in posix.go release file locks on close.
package fusefs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// WriteBuffer is the most a file buffers before sending its data. A full
// buffer is a pooled one (client.StreamBuf), handed to the write-back queue
// without a copy.
const WriteBuffer = client.StreamBuffer

// Node is one DFS inode in the mounted tree.
type Node struct {
	fs.Inode
	c   *client.Client
	m   *mount
	ino uint64

	mu          sync.Mutex
	buf         []byte // pending sequential write
	bufOff      int64
	capsMu      sync.Mutex
	noCapsUntil time.Time // until then the inode is known to lack security.capability

	toldMu sync.Mutex
	told   toldAttr // the size and times the kernel was last given (see Open)

	// paged: a read was answered since the kernel last dropped the file's
	// pages, so it may hold some (see Open).
	paged atomic.Bool
}

// toldAttr is what the kernel caches of a node's attributes that an Open
// compares with the master's: if they changed, the kernel's copy is stale.
type toldAttr struct {
	size         uint64
	mtime, ctime int64
}

// tell records the attributes about to be given to the kernel.
func (n *Node) tell(a *fuse.Attr) {
	n.toldMu.Lock()
	n.told = toldAttr{a.Size, int64(a.Mtime)*1e9 + int64(a.Mtimensec), int64(a.Ctime)*1e9 + int64(a.Ctimensec)}
	n.toldMu.Unlock()
}

// stale reports whether a, the master's attributes, differ from what the
// kernel was last told.
func (n *Node) stale(a *proto.Attr) bool {
	n.toldMu.Lock()
	defer n.toldMu.Unlock()
	return n.told != toldAttr{a.Size, a.Mtime, a.Ctime}
}

// cacheTTL is how long the kernel may keep entries and attributes, and how
// long a node trusts that it has no security.capability xattr.
const cacheTTL = time.Second

var (
	_ fs.NodeLookuper   = (*Node)(nil)
	_ fs.NodeGetattrer  = (*Node)(nil)
	_ fs.NodeSetattrer  = (*Node)(nil)
	_ fs.NodeReaddirer  = (*Node)(nil)
	_ fs.NodeCreater    = (*Node)(nil)
	_ fs.NodeMkdirer    = (*Node)(nil)
	_ fs.NodeMknoder    = (*Node)(nil)
	_ fs.NodeSymlinker  = (*Node)(nil)
	_ fs.NodeReadlinker = (*Node)(nil)
	_ fs.NodeUnlinker   = (*Node)(nil)
	_ fs.NodeRmdirer    = (*Node)(nil)
	_ fs.NodeOpener     = (*Node)(nil)
	_ fs.NodeReader     = (*Node)(nil)
	_ fs.NodeWriter     = (*Node)(nil)
	_ fs.NodeFlusher    = (*Node)(nil)
	_ fs.NodeFsyncer    = (*Node)(nil)
	_ fs.NodeRenamer    = (*Node)(nil)
	_ fs.NodeLinker     = (*Node)(nil)
	_ fs.NodeReleaser   = (*Node)(nil)
)

// Root returns the root node of a mount served by c.
func Root(c *client.Client) *Node { return &Node{c: c, m: newMount(c), ino: proto.RootIno} }

// Mount mounts the DFS at dir. The caller waits with Wait and ends with Unmount.
func Mount(dir string, c *client.Client, debug bool) (*fuse.Server, error) {
	ttl := cacheTTL
	root := Root(c)
	opts := &fs.Options{
		EntryTimeout:   &ttl,
		AttrTimeout:    &ttl,
		ExternalNodeID: true,
		MountOptions: fuse.MountOptions{
			FsName:       "rampart",
			Name:         "rampart",
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			EnableLocks:  true,
			Debug:        debug,
		},
	}
	raw := &rawFS{RawFileSystem: fs.NewNodeFS(root, opts), m: root.m}
	srv, err := fuse.NewServer(raw, dir, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		_ = srv.Unmount()
		return nil, err
	}
	return srv, nil
}

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	// A request's context ends when the kernel interrupted it (the calling
	// thread got a signal) and it has run for interruptGrace since (patient):
	// EINTR lets the program retry or give up; EIO would report a failure of
	// the cluster that never happened.
	if errors.Is(err, context.Canceled) {
		return syscall.EINTR
	}
	// An error with no errno of its own reaches the program as EIO: say what it was,
	// or nobody can tell why a read or an unlink failed.
	slog.Warn("dfs mount: returning EIO", "err", err)
	return syscall.EIO
}

// staleInode is errno for a call on an inode the kernel reached through a
// name: ENOENT means the inode is gone (another client unlinked it or
// renamed another file over the name), so the kernel's entry is stale.
// ESTALE makes the kernel look the name up again (LOOKUP_REVAL) and retry
// the open or stat once, which then finds what the name holds now.
func staleInode(err error) syscall.Errno {
	if e := errno(err); e != syscall.ENOENT {
		return e
	}
	return syscall.ESTALE
}

func fillAttr(a *proto.Attr, out *fuse.Attr) {
	out.Ino = a.Ino
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Uid, out.Gid = a.Uid, a.Gid
	out.Rdev = a.Rdev
	out.Size = a.Size
	out.Blocks = (a.Size + 511) / 512
	out.Blksize = 1 << 16
	out.Atime, out.Atimensec = uint64(a.Atime/1e9), uint32(a.Atime%1e9)
	out.Mtime, out.Mtimensec = uint64(a.Mtime/1e9), uint32(a.Mtime%1e9)
	out.Ctime, out.Ctimensec = uint64(a.Ctime/1e9), uint32(a.Ctime%1e9)
}

func (n *Node) child(ctx context.Context, a *proto.Attr, out *fuse.EntryOut) *fs.Inode {
	fillAttr(a, &out.Attr)
	in := n.NewInode(ctx, &Node{c: n.c, m: n.m, ino: a.Ino}, fs.StableAttr{Mode: a.Mode & syscall.S_IFMT, Ino: a.Ino})
	if c, ok := in.Operations().(*Node); ok {
		c.tell(&out.Attr)
	}
	return in
}

// Lookup finds a child.
func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	a, err := n.c.Lookup(ctx, n.ino, name)
	if err != nil {
		return nil, errno(err)
	}
	return n.child(ctx, a, out), 0
}

// Getattr returns the attributes, counting buffered writes in the size.
func (n *Node) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	a, err := n.c.Getattr(ctx, n.ino)
	if err != nil {
		return staleInode(err)
	}
	fillAttr(a, &out.Attr)
	n.mu.Lock()
	if end := uint64(n.bufOff) + uint64(len(n.buf)); len(n.buf) > 0 && end > out.Size {
		out.Size = end
	}
	n.mu.Unlock()
	n.tell(&out.Attr)
	return 0
}

// Setattr changes mode, owner, size or times.
func (n *Node) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	if err := n.flush(ctx); err != 0 {
		return err
	}
	var s client.SetAttr
	if v, ok := in.GetMode(); ok {
		s.Valid |= proto.SetMode
		s.Mode = v
	}
	if v, ok := in.GetUID(); ok {
		s.Valid |= proto.SetUid
		s.Uid = v
	}
	if v, ok := in.GetGID(); ok {
		s.Valid |= proto.SetGid
		s.Gid = v
	}
	if v, ok := in.GetSize(); ok {
		s.Valid |= proto.SetSize
		s.Size = v
		if err := n.zeroTail(ctx, v); err != 0 {
			return err
		}
	}
	if v, ok := in.GetATime(); ok {
		s.Valid |= proto.SetAtime
		s.Atime = v.UnixNano()
	}
	if v, ok := in.GetMTime(); ok {
		s.Valid |= proto.SetMtime
		s.Mtime = v.UnixNano()
	}
	a, err := n.c.Setattr(ctx, n.ino, s)
	if err != nil {
		return errno(err)
	}
	fillAttr(a, &out.Attr)
	return 0
}

// zeroBuf is the source of the zero writes of zeroTail (made on first use,
// never written).
var zeroBuf = sync.OnceValue(func() []byte { return make([]byte, WriteBuffer) })

// zeroTail prepares a shrink to size: the master drops the chunks wholly
// past the new end, but the chunk holding it keeps its old bytes after size,
// which a later grow or a write past the end would expose. They are
// overwritten with zeros first (the size does not change yet).
func (n *Node) zeroTail(ctx context.Context, size uint64) syscall.Errno {
	if size%proto.ChunkSize == 0 {
		return 0
	}
	a, err := n.c.Getattr(ctx, n.ino)
	if err != nil {
		return errno(err)
	}
	if !a.IsRegular() || size >= a.Size {
		return 0
	}
	idx := uint32(size / proto.ChunkSize)
	loc, err := n.c.ChunkLocation(ctx, n.ino, idx)
	if err != nil {
		return errno(err)
	}
	if loc.ID == 0 {
		return 0 // a hole reads as zeros
	}
	end := min(a.Size, (uint64(idx)+1)*proto.ChunkSize)
	zeros := zeroBuf()
	for off := size; off < end; {
		l := min(end-off, uint64(len(zeros)))
		if err := n.c.WriteAt(ctx, n.ino, zeros[:l], int64(off)); err != nil {
			return errno(err)
		}
		off += l
	}
	return 0
}

// Readdir lists the directory.
func (n *Node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	ents, err := n.c.Readdir(ctx, n.ino)
	if err != nil {
		return nil, errno(err)
	}
	list := make([]fuse.DirEntry, 0, len(ents))
	for _, e := range ents {
		list = append(list, fuse.DirEntry{Name: e.Name, Ino: e.Ino})
	}
	return fs.NewListDirStream(list), 0
}

func (n *Node) create(ctx context.Context, name string, nd proto.Node, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if caller, ok := fuse.FromContext(ctx); ok {
		nd.Uid, nd.Gid = caller.Uid, caller.Gid
	}
	a, err := n.c.Create(ctx, n.ino, name, nd)
	if err != nil {
		return nil, errno(err)
	}
	return n.child(ctx, a, out), 0
}

// Create makes and opens a regular file in one master round trip.
func (n *Node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	nd := proto.Node{Mode: syscall.S_IFREG | mode&07777}
	if caller, ok := fuse.FromContext(ctx); ok {
		nd.Uid, nd.Gid = caller.Uid, caller.Gid
	}
	create := n.c.CreateOpen
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		// Opened for writing: the master offers chunk 0 with the create,
		// so a small file's first write needs no WriteChunk round trip.
		create = n.c.CreateOpenW
	}
	a, err := create(ctx, n.ino, name, nd)
	if err != nil {
		if errno(err) == syscall.EEXIST && flags&syscall.O_EXCL == 0 {
			// Another mount created the name since the kernel's lookup found
			// nothing: open(2) without O_EXCL opens the existing file.
			return n.openExisting(ctx, name, flags, out)
		}
		return nil, nil, 0, errno(err)
	}
	n.m.opened(a.Ino)
	in := n.child(ctx, a, out)
	if child, ok := in.Operations().(*Node); ok {
		child.setNoCaps() // a new file has no xattrs
	}
	return in, &handle{}, 0, 0
}

// openExisting opens the regular file name for a Create that lost a race with
// another mount's create of the same name.
func (n *Node) openExisting(ctx context.Context, name string, flags uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	a, err := n.c.Lookup(ctx, n.ino, name)
	if err != nil {
		return nil, nil, 0, errno(err)
	}
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
	case syscall.S_IFDIR:
		return nil, nil, 0, syscall.EISDIR
	default:
		return nil, nil, 0, syscall.EEXIST
	}
	in := n.child(ctx, a, out)
	child, ok := in.Operations().(*Node)
	if !ok {
		return nil, nil, 0, syscall.EIO
	}
	fh, fl, e := child.Open(ctx, flags)
	if e != 0 {
		return nil, nil, 0, e
	}
	return in, fh, fl, 0
}

// Mkdir makes a directory.
func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	return n.create(ctx, name, proto.Node{Mode: syscall.S_IFDIR | mode&07777}, out)
}

// Mknod makes a special file (fifo, socket, device).
func (n *Node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	return n.create(ctx, name, proto.Node{Mode: mode, Rdev: dev}, out)
}

// Symlink makes a symbolic link.
func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	return n.create(ctx, name, proto.Node{Mode: syscall.S_IFLNK | 0o777, Target: target}, out)
}

// Readlink returns a symlink's target.
func (n *Node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	a, err := n.c.Getattr(ctx, n.ino)
	if err != nil {
		return nil, errno(err)
	}
	return []byte(a.Target), 0
}

// Unlink removes a file.
func (n *Node) Unlink(ctx context.Context, name string) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	return errno(n.c.Unlink(ctx, n.ino, name, false))
}

// Rmdir removes an empty directory.
func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	return errno(n.c.Unlink(ctx, n.ino, name, true))
}

// handle is an open file: the master counts it until Release.
type handle struct{}

// Open opens a file, counting the handle in the master; O_TRUNC truncates
// it in the same round trip.
func (n *Node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	var of uint32
	if flags&syscall.O_TRUNC != 0 {
		if err := n.flush(ctx); err != 0 {
			return nil, 0, err
		}
		of |= proto.OpenTrunc
	}
	// A read-only open of a file the kernel holds no pages of is about to
	// read it: the client may send the read of a small file with the open
	// (client.OpenToRead), expecting the size the kernel was last told.
	var guess uint64
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY && !n.paged.Load() {
		n.toldMu.Lock()
		guess = n.told.size
		n.toldMu.Unlock()
	}
	a, err := n.c.OpenToRead(ctx, n.ino, of, guess)
	if err != nil {
		return nil, 0, staleInode(err)
	}
	n.m.opened(n.ino)
	stale := n.stale(a)
	if stale {
		// Close-to-open: another client changed the file since the kernel
		// cached its attributes (up to cacheTTL ago). Without this the
		// kernel would clamp reads at the old size. The next access asks
		// Getattr.
		n.NotifyContent(-1, 0)
	}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || !a.IsRegular() {
		n.paged.Store(false) // the kernel drops the pages (no FOPEN_KEEP_CACHE)
		return &handle{}, 0, 0
	}
	if !stale && n.paged.Load() {
		// Opened for reading, unchanged since the kernel was last told
		// its size and times (a change seen by a Getattr since drops the
		// pages: the kernel's auto_inval_data): the pages it holds are
		// this file's, so they are kept, as MooseFS's cache mode AUTO
		// does. A re-read of an unchanged file then costs no chunkserver
		// read.
		return &handle{}, fuse.FOPEN_KEEP_CACHE, 0
	}
	n.paged.Store(false)
	// A small file opened for reading is about to be read: its data is
	// fetched while the open returns (client.Prefetch).
	n.c.Prefetch(n.ino, a.Size)
	return &handle{}, 0, 0
}

// Release drops the handle's count in the master after the last close of
// the open file; an unlinked file goes when its last handle does.
func (n *Node) Release(ctx context.Context, f fs.FileHandle) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	if _, ok := f.(*handle); !ok {
		return 0
	}
	if err := n.flush(ctx); err != 0 {
		n.m.release(ctx, n.ino)
		return err
	}
	n.m.release(ctx, n.ino)
	return 0
}

// Read flushes pending writes, then reads from the chunkservers.
func (n *Node) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	if err := n.flush(ctx); err != 0 {
		return nil, err
	}
	got, err := n.c.ReadAt(ctx, n.ino, dest, off)
	if err != nil {
		return nil, errno(err)
	}
	n.paged.Store(true)
	return fuse.ReadResultData(dest[:got]), 0
}

// Write buffers sequential writes and sends them in WriteBuffer pieces.
func (n *Node) Write(ctx context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.buf) > 0 && off != n.bufOff+int64(len(n.buf)) {
		if err := n.flushLocked(ctx); err != 0 {
			return 0, err
		}
	}
	if len(n.buf) == 0 {
		n.bufOff = off
	}
	n.buf = appendPending(n.buf, data)
	if len(n.buf) >= WriteBuffer {
		if err := n.flushLocked(ctx); err != 0 {
			return 0, err
		}
	}
	return uint32(len(data)), 0
}

// appendPending appends data to a pending write buffer. The buffer grows by
// doubling, capped at WriteBuffer (beyond which Write sends it anyway), so a
// small file's write holds a few KiB, not WriteBuffer: allocating (and
// zeroing) 8 MiB per small file created was most of a 4 KiB write(2).
func appendPending(buf, data []byte) []byte {
	need := len(buf) + len(data)
	if need <= cap(buf) {
		return append(buf, data...)
	}
	c := max(2*cap(buf), need, 64<<10)
	var nb []byte
	switch {
	case c >= WriteBuffer && need <= WriteBuffer:
		nb = client.StreamBuf()[:len(buf)]
	case c > WriteBuffer:
		nb = make([]byte, len(buf), need)
	default:
		nb = make([]byte, len(buf), c)
	}
	copy(nb, buf)
	return append(nb, data...)
}

// dropIdleBuffer frees the pending write buffer once it is empty, at close:
// an idle file keeps no write buffer.
func (n *Node) dropIdleBuffer() {
	n.mu.Lock()
	if len(n.buf) == 0 {
		client.PutStreamBuf(n.buf)
		n.buf = nil
	}
	n.mu.Unlock()
}

func (n *Node) flush(ctx context.Context) syscall.Errno {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.flushLocked(ctx)
}

func (n *Node) flushLocked(ctx context.Context) syscall.Errno {
	if len(n.buf) == 0 {
		return 0
	}
	// Queued (write-back): Flush and Fsync wait for it with Sync; reads and
	// attribute calls of the client wait for it too. A full-size (pooled)
	// buffer goes with it, not a copy, and the writer, which is likely to
	// fill the next one, gets another pooled one at once. A smaller buffer
	// (a small file, a random write) is copied and kept for the next write.
	if cap(n.buf) != WriteBuffer {
		err := n.c.WriteAtAsync(ctx, n.ino, n.buf, n.bufOff)
		n.buf = n.buf[:0]
		return errno(err)
	}
	if err := n.c.WriteAtAsyncOwned(ctx, n.ino, n.buf, n.bufOff); err != nil {
		n.buf = n.buf[:0]
		return errno(err)
	}
	n.buf = client.StreamBuf()
	return 0
}

// Flush sends pending writes at close, so close reports write errors. The
// data is then on every copy, not yet on their disks (close does not fsync).
func (n *Node) Flush(ctx context.Context, _ fs.FileHandle) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	if err := n.flush(ctx); err != 0 {
		return err
	}
	n.dropIdleBuffer()
	return errno(n.c.Flush(ctx, n.ino))
}

// Fsync (fsync and fdatasync on a file, fsync on a directory) sends pending
// writes, then returns once every copy of every chunk the file wrote since
// its last fsync has fdatasynced it and the master's metadata log is on
// disk (client.Sync). The kernel sends it after each write(2) of a file
// opened with O_SYNC or O_DSYNC, which therefore returns only when the data
// is durable.
func (n *Node) Fsync(ctx context.Context, _ fs.FileHandle, _ uint32) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	if err := n.flush(ctx); err != 0 {
		return err
	}
	return errno(n.c.Sync(ctx, n.ino))
}

// Rename moves a child, replacing an existing entry unless RENAME_NOREPLACE,
// or swaps two entries with RENAME_EXCHANGE.
func (n *Node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	ctx, done := patient(ctx)
	defer done()
	np, ok := newParent.(*Node)
	if !ok {
		return syscall.EXDEV
	}
	return errno(n.c.Rename(ctx, n.ino, name, np.ino, newName, flags))
}

// Link adds a hard link to target named name.
func (n *Node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, done := patient(ctx)
	defer done()
	t, ok := target.(*Node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if err := t.flush(ctx); err != 0 {
		return nil, err
	}
	a, err := n.c.Link(ctx, t.ino, n.ino, name)
	if err != nil {
		return nil, errno(err)
	}
	return n.child(ctx, a, out), 0
}
