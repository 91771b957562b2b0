package blockdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// FileOptions tune how OpenFile opens a file or block device.
type FileOptions struct {
	ReadOnly bool
	// BlockSize is the logical block size: 512 (the default) or 4096.
	BlockSize int
	// Create makes a missing file, sparse, of Size bytes.
	Create bool
	Size   int64
	// WriteThrough opens with O_DSYNC: every write is durable when it returns, and the
	// device reports no volatile write cache.
	WriteThrough bool
}

// File is a Device over a regular file (sparse files welcome) or a block device.
//
// A buffered file has a volatile write cache (the page cache) and says so through
// WriteCacheEnabled; Flush is fdatasync, FUA writes use RWF_DSYNC. Unmap punches holes
// (files) or zeroes out (block devices), and MappedExtent reports a file's holes with
// SEEK_DATA/SEEK_HOLE.
type File struct {
	f            *os.File
	fd           int
	path         string
	size         atomic.Int64 // changes only through Refresh
	bs           int
	readOnly     bool
	writeThrough bool
	blockDev     bool

	fuaOnce   sync.Once
	fuaNative bool // pwritev2(RWF_DSYNC) works here
}

var (
	_ Device            = (*File)(nil)
	_ Unmapper          = (*File)(nil)
	_ WriteZeroer       = (*File)(nil)
	_ FUAWriter         = (*File)(nil)
	_ LBAStatusReporter = (*File)(nil)
	_ ReadOnlyer        = (*File)(nil)
	_ WriteCacher       = (*File)(nil)
	_ Identifier        = (*File)(nil)
	_ Closer            = (*File)(nil)
	_ Refresher         = (*File)(nil)
)

// OpenFile opens path as a Device.
func OpenFile(path string, opts FileOptions) (*File, error) {
	bs := opts.BlockSize
	if bs == 0 {
		bs = 512
	}
	if bs != 512 && bs != 4096 {
		return nil, fmt.Errorf("open %s: block size %d: must be 512 or 4096", path, bs)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	flags := os.O_RDWR
	if opts.ReadOnly {
		flags = os.O_RDONLY
	}
	if opts.WriteThrough {
		flags |= unix.O_DSYNC
	}
	f, err := os.OpenFile(abs, flags, 0)
	if errors.Is(err, os.ErrNotExist) && opts.Create {
		f, err = create(abs, opts.Size, bs, flags)
	}
	if err != nil {
		return nil, fmt.Errorf("open volume: %w", err)
	}
	d := &File{f: f, fd: int(f.Fd()), path: abs, bs: bs, readOnly: opts.ReadOnly, writeThrough: opts.WriteThrough}
	if err := d.stat(); err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

func create(path string, size int64, bs int, flags int) (*os.File, error) {
	if size <= 0 || size%int64(bs) != 0 {
		return nil, fmt.Errorf("create %s: size %d must be a positive multiple of the block size %d", path, size, bs)
	}
	f, err := os.OpenFile(path, flags|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return f, nil
}

func (d *File) stat() error {
	n, blockDev, err := d.statSize()
	if err != nil {
		return err
	}
	d.size.Store(n)
	d.blockDev = blockDev
	return nil
}

// statSize reads the size of the file or block device, in whole blocks.
func (d *File) statSize() (size int64, blockDev bool, err error) {
	fi, err := d.f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("stat %s: %w", d.path, err)
	}
	switch {
	case fi.Mode().IsRegular():
		size = fi.Size()
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		blockDev = true
		size, err = blockDevSize(d.fd)
		if err != nil {
			return 0, false, fmt.Errorf("size of block device %s: %w", d.path, err)
		}
	default:
		return 0, false, fmt.Errorf("open volume %s: not a regular file or block device (mode %s)", d.path, fi.Mode())
	}
	size -= size % int64(d.bs)
	if size == 0 {
		return 0, false, fmt.Errorf("open volume %s: smaller than one %d-byte block", d.path, d.bs)
	}
	return size, blockDev, nil
}

// Refresh re-reads the size of the file or block device, which may have been grown or
// shrunk since it was opened, and returns it.
func (d *File) Refresh() (int64, error) {
	n, _, err := d.statSize()
	if err != nil {
		return d.size.Load(), err
	}
	d.size.Store(n)
	return n, nil
}

func blockDevSize(fd int) (int64, error) {
	var n uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafePointer(&n))); e != 0 {
		return 0, e
	}
	return int64(n), nil
}

// Path is the absolute path of the backing file or device.
func (d *File) Path() string { return d.path }

func (d *File) Size() int64             { return d.size.Load() }
func (d *File) BlockSize() int          { return d.bs }
func (d *File) ReadOnly() bool          { return d.readOnly }
func (d *File) WriteCacheEnabled() bool { return !d.writeThrough }
func (d *File) DeviceID() string        { return "file:" + d.path }
func (d *File) Close() error            { return d.f.Close() }

func (d *File) ReadAt(p []byte, off int64) (int, error) {
	if err := CheckRange(d, off, int64(len(p))); err != nil {
		return 0, fmt.Errorf("read %s: %w", d.path, err)
	}
	n, err := d.f.ReadAt(p, off)
	if err != nil {
		return n, fmt.Errorf("read %s at %d: %w", d.path, off, err)
	}
	return n, nil
}

func (d *File) WriteAt(p []byte, off int64) (int, error) {
	if err := d.checkWrite(off, int64(len(p))); err != nil {
		return 0, err
	}
	n, err := d.f.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("write %s at %d: %w", d.path, off, err)
	}
	return n, nil
}

func (d *File) checkWrite(off, n int64) error {
	if d.readOnly {
		return fmt.Errorf("write %s: %w", d.path, ErrReadOnly)
	}
	if err := CheckRange(d, off, n); err != nil {
		return fmt.Errorf("write %s: %w", d.path, err)
	}
	return nil
}

// Flush makes completed writes durable (fdatasync).
func (d *File) Flush() error {
	if d.readOnly {
		return nil
	}
	if err := unix.Fdatasync(d.fd); err != nil {
		return fmt.Errorf("flush %s: %w", d.path, err)
	}
	return nil
}

// WriteAtFUA writes p so that it is durable when the call returns: one pwritev2 with
// RWF_DSYNC where the kernel has it, else a write and an fdatasync.
func (d *File) WriteAtFUA(p []byte, off int64) (int, error) {
	if d.writeThrough {
		return d.WriteAt(p, off)
	}
	if err := d.checkWrite(off, int64(len(p))); err != nil {
		return 0, err
	}
	d.fuaOnce.Do(func() {
		_, err := unix.Pwritev2(d.fd, nil, 0, unix.RWF_DSYNC)
		d.fuaNative = err == nil
	})
	if d.fuaNative {
		done := 0
		for done < len(p) {
			n, err := unix.Pwritev2(d.fd, [][]byte{p[done:]}, off+int64(done), unix.RWF_DSYNC)
			if err != nil {
				return done, fmt.Errorf("fua write %s at %d: %w", d.path, off+int64(done), err)
			}
			done += n
		}
		return done, nil
	}
	n, err := d.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	return n, d.Flush()
}

// Unmap deallocates the range: punches a hole in a file (it then reads as zeroes), and
// zeroes a block device's range out (BLKZEROOUT), falling back to writing zeroes.
func (d *File) Unmap(off, length int64) error {
	if err := d.checkWrite(off, length); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	var err error
	if d.blockDev {
		err = blkZeroOut(d.fd, off, length)
	} else {
		err = unix.Fallocate(d.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	}
	if isNotSupported(err) {
		return d.writeZeroBuffers(off, length)
	}
	if err != nil {
		return fmt.Errorf("unmap %s %d+%d: %w", d.path, off, length, err)
	}
	return nil
}

// WriteZeroes zeroes the range and keeps it allocated (FALLOC_FL_ZERO_RANGE), falling
// back to writing zero buffers.
func (d *File) WriteZeroes(off, length int64) error {
	if err := d.checkWrite(off, length); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	var err error
	if d.blockDev {
		err = blkZeroOut(d.fd, off, length)
	} else {
		err = unix.Fallocate(d.fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	}
	if isNotSupported(err) {
		return d.writeZeroBuffers(off, length)
	}
	if err != nil {
		return fmt.Errorf("write zeroes %s %d+%d: %w", d.path, off, length, err)
	}
	return nil
}

func (d *File) writeZeroBuffers(off, length int64) error {
	for length > 0 {
		n := min(length, int64(len(zeroBuf)))
		if _, err := d.f.WriteAt(zeroBuf[:n], off); err != nil {
			return fmt.Errorf("write zeroes %s at %d: %w", d.path, off, err)
		}
		off += n
		length -= n
	}
	return nil
}

func blkZeroOut(fd int, off, length int64) error {
	r := [2]uint64{uint64(off), uint64(length)}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKZEROOUT, uintptr(unsafePointer(&r))); e != 0 {
		return e
	}
	return nil
}

func isNotSupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL)
}

// MappedExtent reports whether the blocks at off are allocated, and how far that holds,
// from the file's holes (SEEK_DATA/SEEK_HOLE). A block device is mapped throughout.
func (d *File) MappedExtent(off int64) (Extent, error) {
	size := d.size.Load()
	if off < 0 || off >= size || off%int64(d.bs) != 0 {
		return Extent{}, fmt.Errorf("mapped extent of %s at %d: %w", d.path, off, ErrOutOfRange)
	}
	if d.blockDev {
		return Extent{Off: off, Length: size - off, Mapped: true}, nil
	}
	data, err := unix.Seek(d.fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) { // no data at or after off: a hole to the end
		return Extent{Off: off, Length: size - off}, nil
	}
	if err != nil {
		return Extent{}, fmt.Errorf("seek data %s at %d: %w", d.path, off, err)
	}
	if data > off {
		end := min(alignDown(data, int64(d.bs)), size)
		if end > off {
			return Extent{Off: off, Length: end - off}, nil
		}
	}
	hole, err := unix.Seek(d.fd, off, unix.SEEK_HOLE)
	if err != nil {
		return Extent{}, fmt.Errorf("seek hole %s at %d: %w", d.path, off, err)
	}
	end := min(alignUp(hole, int64(d.bs)), size)
	if end <= off {
		end = off + int64(d.bs)
	}
	return Extent{Off: off, Length: end - off, Mapped: true}, nil
}

func alignDown(v, a int64) int64 { return v - v%a }
func alignUp(v, a int64) int64   { return alignDown(v+a-1, a) }
