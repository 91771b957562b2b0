package fusefs

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
)

// TestErrno: an interrupted request (its context cancelled by go-fuse) must reach the
// program as EINTR, which the kernel restarts, not as EIO; errnos pass through; other
// errors are EIO.
func TestErrno(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{fmt.Errorf("Open: %w", context.Canceled), syscall.EINTR},
		{fmt.Errorf("unlink: %w", syscall.ENOENT), syscall.ENOENT},
		{fmt.Errorf("Open: %w", context.DeadlineExceeded), syscall.EIO},
		{errors.New("chunkserver said no"), syscall.EIO},
	} {
		if got := errno(tt.err); got != tt.want {
			t.Errorf("errno(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
