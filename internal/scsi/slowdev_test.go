package scsi

import (
	"time"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// slowMem is a Mem whose writes take a fixed time.
type slowMem struct {
	*blockdev.Mem
	delay time.Duration
}

func newSlowMem(size int64, delay time.Duration) *slowMem {
	return &slowMem{Mem: blockdev.NewMem(size, testBS), delay: delay}
}

func (s *slowMem) WriteAt(p []byte, off int64) (int, error) {
	time.Sleep(s.delay)
	return s.Mem.WriteAt(p, off)
}
