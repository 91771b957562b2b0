package target

import (
	"fmt"
	"os"
)

// ResizeFile sets the plain file of backstore b to size bytes, for `rampart target
// backstore resize`. Growing is safe; shrinking discards the data past size and
// initiators that still believe the old capacity fail their I/O there, so it needs
// force. Other volumes (block devices, raid:, iscsi://) are resized by their own
// tools; a serving target notices any new size (RefreshSizes) either way.
func ResizeFile(b Backstore, size int64, force bool) error {
	bs := int64(b.BlockSize)
	if bs == 0 {
		bs = 512
	}
	if size <= 0 || size%bs != 0 {
		return editErr("backstore %s: size %d is not a positive multiple of the %d-byte block size", b.Name, size, bs)
	}
	fi, err := os.Stat(b.Volume)
	if err != nil {
		return editErr("backstore %s: volume %s is not a plain file (%w): resize the volume with its own tools; a serving target notices the new size within a second", b.Name, b.Volume, err)
	}
	if !fi.Mode().IsRegular() {
		return editErr("backstore %s: volume %s is not a plain file (mode %s): resize the device with its own tools; a serving target notices the new size within a second", b.Name, b.Volume, fi.Mode())
	}
	if b.ReadOnly {
		return editErr("backstore %s is read-only", b.Name)
	}
	if size < fi.Size() && !force {
		return editErr("backstore %s: shrinking %s from %d to %d bytes discards the data past the new end, and initiators fail I/O there until they re-read the capacity (use --force)", b.Name, b.Volume, fi.Size(), size)
	}
	if err := os.Truncate(b.Volume, size); err != nil {
		return fmt.Errorf("resize backstore %s: %w", b.Name, err)
	}
	return nil
}
