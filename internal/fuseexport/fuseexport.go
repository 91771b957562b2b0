// Package fuseexport shows a blockdev.Device as one file in a FUSE mount, so the host
// can put a kernel file system on a rampart volume without any rampart kernel module:
// `losetup -f --show MOUNT/NAME`, then mkfs.xfs and mount the loop device. It is how
// this project attaches a remote LUN to a host that has no iSCSI or NBD kernel module;
// on ordinary machines open-iscsi + dm-multipath (against rampart's target) or
// nbd-client (against `rampart attach --nbd`) are the usual attachments.
//
// Reads and writes go straight to the Device (direct I/O: the kernel's page cache sits
// in the loop device or file system above, not twice); fsync is the Device's Flush.
// Unaligned requests go through blockdev.Unaligned (read-modify-write of edge blocks).
package fuseexport

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

type root struct {
	fs.Inode
	name string
	file *file
}

var _ fs.NodeOnAdder = (*root)(nil)

func (r *root) OnAdd(ctx context.Context) {
	ch := r.NewPersistentInode(ctx, r.file, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild(r.name, ch, false)
}

type file struct {
	fs.Inode
	dev blockdev.Device
	ua  *blockdev.Unaligned // byte-granular access: the kernel may send any offset
}

var (
	_ fs.NodeGetattrer = (*file)(nil)
	_ fs.NodeOpener    = (*file)(nil)
	_ fs.NodeReader    = (*file)(nil)
	_ fs.NodeWriter    = (*file)(nil)
	_ fs.NodeFsyncer   = (*file)(nil)
	_ fs.NodeFlusher   = (*file)(nil)
	_ fs.NodeSetattrer = (*file)(nil)
)

func (f *file) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = 0o600
	if blockdev.IsReadOnly(f.dev) {
		out.Mode = 0o400
	}
	out.Size = uint64(f.dev.Size())
	out.Blksize = uint32(f.dev.BlockSize())
	out.Blocks = out.Size / 512
	return 0
}

// Setattr accepts the size the file already has (tools truncate to it) and refuses others.
func (f *file) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && int64(sz) != f.dev.Size() {
		return syscall.EPERM
	}
	return f.Getattr(ctx, fh, out)
}

func (f *file) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 && blockdev.IsReadOnly(f.dev) {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *file) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := f.ua.Dev.Size()
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	n := min(int64(len(dest)), size-off)
	if _, err := f.ua.ReadAt(dest[:n], off); err != nil {
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *file) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	size := f.ua.Dev.Size()
	if off >= size {
		return 0, syscall.ENOSPC
	}
	if off+int64(len(data)) > size {
		data = data[:size-off]
	}
	if _, err := f.ua.WriteAt(data, off, false); err != nil {
		return 0, syscall.EIO
	}
	return uint32(len(data)), 0
}

func (f *file) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	if err := f.dev.Flush(); err != nil {
		return syscall.EIO
	}
	return 0
}

func (f *file) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno { return 0 }

// Mount shows dev as mountpoint/name until the returned server is unmounted.
func Mount(mountpoint, name string, dev blockdev.Device) (*fuse.Server, error) {
	r := &root{name: name, file: &file{dev: dev, ua: &blockdev.Unaligned{Dev: dev}}}
	timeout := time.Second
	srv, err := fs.Mount(mountpoint, r, &fs.Options{
		AttrTimeout:  &timeout,
		EntryTimeout: &timeout,
		MountOptions: fuse.MountOptions{
			FsName:        "rampart:" + name,
			Name:          "rampart",
			AllowOther:    os.Geteuid() == 0, // lets losetup and the kernel open it
			MaxWrite:      1 << 20,
			DisableXAttrs: true,
			MaxBackground: 64,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s at %s: %w", name, mountpoint, err)
	}
	return srv, nil
}
