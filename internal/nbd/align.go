package nbd

import (
	"net"
	"sync"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

type net_Buffers = net.Buffers

// NBD clients may address any byte; Devices take whole blocks. Aligned requests go
// straight to the device. An unaligned one is widened to whole blocks: a read reads the
// covering blocks and copies the part asked for; a write reads, modifies and writes the
// partial blocks at its edges under a lock on those blocks, so two partial writes to one
// block cannot lose each other's bytes.

const lockStripes = 256

type blockLocks [lockStripes]sync.Mutex

func (l *blockLocks) lock(block int64) *sync.Mutex {
	m := &l[uint64(block)%lockStripes]
	m.Lock()
	return m
}

func (t *transmission) span(off, n int64) (start, end int64) {
	bs := int64(t.dev.BlockSize())
	start = off - off%bs
	end = off + n
	if r := end % bs; r != 0 {
		end += bs - r
	}
	return start, end
}

func (t *transmission) readAt(p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	start, end := t.span(off, int64(len(p)))
	if start == off && end == off+int64(len(p)) {
		_, err := t.dev.ReadAt(p, off)
		return err
	}
	tmp := make([]byte, end-start)
	if _, err := t.dev.ReadAt(tmp, start); err != nil {
		return err
	}
	copy(p, tmp[off-start:])
	return nil
}

func (t *transmission) writeAt(p []byte, off int64, fua bool) error {
	if len(p) == 0 {
		return nil
	}
	start, end := t.span(off, int64(len(p)))
	if start == off && end == off+int64(len(p)) {
		if fua {
			_, err := blockdev.WriteFUA(t.dev, p, off)
			return err
		}
		_, err := t.dev.WriteAt(p, off)
		return err
	}
	bs := int64(t.dev.BlockSize())
	first, last := start/bs, end/bs-1
	m1 := t.locks.lock(first)
	defer m1.Unlock()
	if last%lockStripes != first%lockStripes {
		m2 := t.locks.lock(last)
		defer m2.Unlock()
	}
	tmp := make([]byte, end-start)
	if _, err := t.dev.ReadAt(tmp[:bs], start); err != nil {
		return err
	}
	if end-bs > start {
		if _, err := t.dev.ReadAt(tmp[len(tmp)-int(bs):], end-bs); err != nil {
			return err
		}
	}
	copy(tmp[off-start:], p)
	var err error
	if fua {
		_, err = blockdev.WriteFUA(t.dev, tmp, start)
	} else {
		_, err = t.dev.WriteAt(tmp, start)
	}
	return err
}

// zero deallocates (trim) or zeroes a range; partial blocks at the edges are zeroed by
// read-modify-write, since a device cannot unmap part of a block.
func (t *transmission) zero(off, n int64, mayUnmap bool) error {
	if n == 0 {
		return nil
	}
	bs := int64(t.dev.BlockSize())
	inner0 := off + (bs-off%bs)%bs
	inner1 := (off + n) - (off+n)%bs
	if inner1 > inner0 {
		var err error
		if mayUnmap {
			err = blockdev.Unmap(t.dev, inner0, inner1-inner0)
		} else {
			err = blockdev.WriteZeroes(t.dev, inner0, inner1-inner0)
		}
		if err != nil {
			return err
		}
	} else {
		inner0, inner1 = off+n, off+n // no whole block: zero the bytes below
	}
	if inner0 > off {
		if err := t.writeAt(make([]byte, min(inner0, off+n)-off), off, false); err != nil {
			return err
		}
	}
	if inner1 < off+n && inner1 >= inner0 && inner1 > off {
		return t.writeAt(make([]byte, off+n-inner1), inner1, false)
	}
	return nil
}
