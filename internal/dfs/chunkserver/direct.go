package chunkserver

import (
	"errors"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// Large transfers bypass the page cache (O_DIRECT): on this kind of host the
// kernel's copy between fresh page-cache pages and the process costs more CPU
// than the rest of the data path, and the data is the clients' to cache. A
// direct transfer needs its buffer, file offset and length aligned to
// directAlign; it is used for aligned ranges of at least directMin bytes
// (smaller writes stay buffered: a random 4 KiB write does not wait for the
// disk). Small I/O, the header and the CRC table stay buffered; the kernel
// keeps both views coherent (a direct transfer first writes back and drops
// the cached pages of its range). A file system without O_DIRECT (tmpfs on
// older kernels) falls back to buffered I/O.
const (
	directAlign = 4096
	directMin   = 256 << 10
	// bufSize is the size of the pooled aligned buffers: the largest
	// request (4 MiB, proto's MaxIO) plus a block at each end.
	bufSize = 4<<20 + 2*BlockSize
)

var bufPool = sync.Pool{New: func() any { b := alignedBuf(bufSize); return &b }}

// alignedBuf returns n bytes whose first byte is directAlign-aligned.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	if r := int(uintptr(unsafe.Pointer(&b[0])) % directAlign); r != 0 {
		b = b[directAlign-r:]
	}
	return b[:n:n]
}

// getBuf returns an aligned buffer of n bytes, pooled if n fits, and the
// function that gives it back.
func getBuf(n int) ([]byte, func()) {
	if n > bufSize {
		return alignedBuf(n), func() {}
	}
	bp := bufPool.Get().(*[]byte)
	return (*bp)[:n], func() { bufPool.Put(bp) }
}

// writeBuffer is the proto.ServeOptions.Buffer of the chunkserver's
// connections: a large ChunkWrite is read into a pooled aligned buffer,
// placed so that its data starts on a directAlign boundary. The direct
// write then goes out from the request itself (writeRange), and no request
// allocates (and the kernel zeroes) megabytes of fresh memory. Other
// requests are allocated as usual.
func writeBuffer(h proto.Header, head []byte) ([]byte, func()) {
	if h.Type != proto.MsgChunkWrite || h.Length < directMin {
		return nil, nil
	}
	off, ok := proto.ChunkWriteDataOffset(head)
	if !ok {
		return nil, nil
	}
	pad := (directAlign - off%directAlign) % directAlign
	if pad+int(h.Length) > bufSize {
		return nil, nil
	}
	buf, put := getBuf(bufSize)
	return buf[pad : pad+int(h.Length)], put
}

// isAligned reports whether b starts at a directAlign boundary.
func isAligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))%directAlign == 0
}

func aligned(off int64, n int) bool {
	return n >= directMin && off%directAlign == 0 && n%directAlign == 0
}

// direct returns a descriptor of the chunk file opened with O_DIRECT, or -1
// if the file system refuses it. Called with c.mu held.
func (c *chunk) direct() int {
	if !c.dtried {
		c.dtried = true
		fd, err := unix.Open(c.path, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
		if err != nil {
			fd = -1
		}
		c.dfd = fd
	}
	return c.dfd
}

// noDirect gives up O_DIRECT for the chunk after err (EINVAL: the file
// system or the device does not take it). It reports whether to fall back.
func (c *chunk) noDirect(err error) bool {
	if !errors.Is(err, unix.EINVAL) {
		return false
	}
	if c.dfd >= 0 {
		unix.Close(c.dfd)
	}
	c.dfd = -1
	return true
}

// pwriteFull writes all of b at off on fd.
func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.EIO
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// preadFull reads b at off on fd, stopping short only at the end of the
// file; it returns the bytes read.
func preadFull(fd int, b []byte, off int64) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Pread(fd, b[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			break
		}
		done += n
		if done%directAlign != 0 {
			break // a direct read ends short only at the end of the file
		}
	}
	return done, nil
}
