package nbd

import "github.com/rampart-storage/rampart/internal/blockdev"

// NBD clients may address any byte; byte-granular reads and writes go through the
// export's blockdev.Unaligned (shared by every connection to the export).

func (t *transmission) readAt(p []byte, off int64) error {
	_, err := t.ua.ReadAt(p, off)
	return err
}

func (t *transmission) writeAt(p []byte, off int64, fua bool) error {
	_, err := t.ua.WriteAt(p, off, fua)
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
