// Package blockdev defines Device, the one interface at the bottom of rampart's block
// stack, and its optional capabilities.
//
// Every block piece consumes and produces a Device: a file or block device, a memory
// device for tests, a RAID array, a multipath remote LUN, a file of the distributed file
// system. Frontends (the SCSI emulation behind the iSCSI target, NBD) export any Device;
// RAID builds arrays out of any Devices.
//
// Offsets and lengths are in bytes and must be multiples of BlockSize. A Device is safe
// for concurrent use: many ReadAt and WriteAt calls may be in flight at once, and it is
// the caller's job (not the Device's) to order writes to overlapping ranges.
//
// Optional features are one-method interfaces discovered by type assertion, in the
// style of io.WriterTo:
//
//	if u, ok := dev.(blockdev.Unmapper); ok { err = u.Unmap(off, n) }
//
// Each implementation asserts what it provides at compile time, e.g.
// `var _ blockdev.Unmapper = (*File)(nil)`. Helpers in this package (Unmap, WriteZeroes,
// WriteFUA, ...) fall back to plain writes when a capability is missing.
package blockdev

import (
	"errors"
	"io"
)

// Device is a random-access block volume.
type Device interface {
	// ReadAt reads len(p) bytes at byte offset off. A short read is an error.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt writes len(p) bytes at byte offset off. The data may sit in a volatile
	// write cache until Flush returns (see WriteCacher).
	WriteAt(p []byte, off int64) (int, error)
	// Flush makes every write that completed before it was called durable.
	Flush() error
	// Size is the capacity in bytes, a multiple of BlockSize.
	Size() int64
	// BlockSize is the logical block size in bytes (512 or 4096).
	BlockSize() int
}

// Unmapper deallocates a range (thin provisioning). Afterwards the range reads as zeroes.
type Unmapper interface {
	Unmap(off, length int64) error
}

// WriteZeroer zeroes a range efficiently, without sending zero buffers.
type WriteZeroer interface {
	WriteZeroes(off, length int64) error
}

// FUAWriter writes data that is durable when the call returns (Force Unit Access),
// without flushing the rest of the cache.
type FUAWriter interface {
	WriteAtFUA(p []byte, off int64) (int, error)
}

// Extent is a run of blocks that are either all mapped (allocated) or all holes.
type Extent struct {
	Off, Length int64
	Mapped      bool
}

// LBAStatusReporter says which parts of the device are allocated, for GET LBA STATUS.
type LBAStatusReporter interface {
	// MappedExtent returns the extent that starts at off: its length (which may be
	// clipped to the device end) and whether it is mapped.
	MappedExtent(off int64) (Extent, error)
}

// ReadOnlyer reports that the device refuses writes.
type ReadOnlyer interface {
	ReadOnly() bool
}

// WriteCacher reports honestly whether completed writes may still be volatile (true for
// a buffered file: they sit in the page cache until Flush). SCSI's WCE bit comes from it.
type WriteCacher interface {
	WriteCacheEnabled() bool
}

// Identifier gives a device a stable identity (used for SCSI serial numbers and NAA
// designators): the same value across restarts for the same backing storage.
type Identifier interface {
	DeviceID() string
}

// Refresher is a device whose size can change behind it (a file grown with truncate, a
// resized block device): Refresh re-reads the size and returns it.
type Refresher interface {
	Refresh() (int64, error)
}

// Closer releases the device.
type Closer = io.Closer

// Sentinel errors. Implementations wrap them with the object that failed.
var (
	ErrReadOnly    = errors.New("blockdev: device is read-only")
	ErrOutOfRange  = errors.New("blockdev: access beyond end of device")
	ErrUnaligned   = errors.New("blockdev: offset or length not a multiple of the block size")
	ErrUnsupported = errors.New("blockdev: operation not supported")
)
