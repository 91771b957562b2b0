package blockdev

import "fmt"

// CheckRange validates an access of n bytes at off against a device's block size and
// capacity, returning ErrUnaligned or ErrOutOfRange wrapped with the range.
func CheckRange(d Device, off, n int64) error {
	bs := int64(d.BlockSize())
	if off < 0 || n < 0 || off%bs != 0 || n%bs != 0 {
		return fmt.Errorf("access %d+%d (block size %d): %w", off, n, bs, ErrUnaligned)
	}
	if off+n > d.Size() || off+n < off {
		return fmt.Errorf("access %d+%d beyond %d bytes: %w", off, n, d.Size(), ErrOutOfRange)
	}
	return nil
}

// zeroBuf is a shared read-only block of zeroes for fallbacks.
var zeroBuf = make([]byte, 1<<20)

// Unmap deallocates a range when d supports it and otherwise writes zeroes, so that
// the range reads as zeroes afterwards either way.
func Unmap(d Device, off, length int64) error {
	if u, ok := d.(Unmapper); ok {
		return u.Unmap(off, length)
	}
	return WriteZeroes(d, off, length)
}

// WriteZeroes zeroes a range, with the device's WriteZeroer when it has one.
func WriteZeroes(d Device, off, length int64) error {
	if z, ok := d.(WriteZeroer); ok {
		return z.WriteZeroes(off, length)
	}
	if err := CheckRange(d, off, length); err != nil {
		return err
	}
	for length > 0 {
		n := min(length, int64(len(zeroBuf)))
		if _, err := d.WriteAt(zeroBuf[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// WriteFUA writes p durably: with the device's FUAWriter when it has one, else a write
// followed by a Flush.
func WriteFUA(d Device, p []byte, off int64) (int, error) {
	if f, ok := d.(FUAWriter); ok {
		return f.WriteAtFUA(p, off)
	}
	n, err := d.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	return n, d.Flush()
}

// IsReadOnly reports whether d refuses writes.
func IsReadOnly(d Device) bool {
	r, ok := d.(ReadOnlyer)
	return ok && r.ReadOnly()
}

// WriteCacheEnabled reports whether d may hold completed writes in a volatile cache.
// A device that does not say is assumed to have one (the safe answer: initiators flush).
func WriteCacheEnabled(d Device) bool {
	if w, ok := d.(WriteCacher); ok {
		return w.WriteCacheEnabled()
	}
	return true
}

// Close closes d if it is a Closer.
func Close(d Device) error {
	if c, ok := d.(Closer); ok {
		return c.Close()
	}
	return nil
}
