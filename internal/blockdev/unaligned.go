package blockdev

import "sync"

// Unaligned gives byte-granular access to a Device for frontends whose clients may
// address any byte (NBD, a file in a FUSE mount). Aligned requests go straight to the
// device. An unaligned read reads the covering blocks and copies the part asked for;
// an unaligned write reads, modifies and writes the covering blocks under a lock on its
// edge blocks, so two partial writes to one block cannot lose each other's bytes. Use
// one Unaligned per device, shared by every connection that writes it.
type Unaligned struct {
	Dev   Device
	locks [256]sync.Mutex
}

func (u *Unaligned) span(off, n int64) (start, end int64) {
	bs := int64(u.Dev.BlockSize())
	start, end = off-off%bs, off+n
	if r := end % bs; r != 0 {
		end += bs - r
	}
	return start, end
}

// ReadAt reads len(p) bytes at any byte offset.
func (u *Unaligned) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	start, end := u.span(off, int64(len(p)))
	if start == off && end == off+int64(len(p)) {
		return u.Dev.ReadAt(p, off)
	}
	tmp := make([]byte, end-start)
	if _, err := u.Dev.ReadAt(tmp, start); err != nil {
		return 0, err
	}
	return copy(p, tmp[off-start:]), nil
}

// WriteAt writes p at any byte offset; with fua the data is durable on return.
func (u *Unaligned) WriteAt(p []byte, off int64, fua bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	write := u.Dev.WriteAt
	if fua {
		write = func(b []byte, o int64) (int, error) { return WriteFUA(u.Dev, b, o) }
	}
	start, end := u.span(off, int64(len(p)))
	if start == off && end == off+int64(len(p)) {
		return write(p, off)
	}
	bs := int64(u.Dev.BlockSize())
	first, last := uint64(start/bs)%256, uint64(end/bs-1)%256
	lo, hi := min(first, last), max(first, last) // always lock in index order
	u.locks[lo].Lock()
	defer u.locks[lo].Unlock()
	if hi != lo {
		u.locks[hi].Lock()
		defer u.locks[hi].Unlock()
	}
	tmp := make([]byte, end-start)
	if _, err := u.Dev.ReadAt(tmp[:bs], start); err != nil {
		return 0, err
	}
	if end-bs > start {
		if _, err := u.Dev.ReadAt(tmp[len(tmp)-int(bs):], end-bs); err != nil {
			return 0, err
		}
	}
	copy(tmp[off-start:], p)
	if _, err := write(tmp, start); err != nil {
		return 0, err
	}
	return len(p), nil
}
