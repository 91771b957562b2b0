package blockdev

import "unsafe"

// unsafePointer passes a pointer to an ioctl argument.
func unsafePointer[T any](p *T) unsafe.Pointer { return unsafe.Pointer(p) }
