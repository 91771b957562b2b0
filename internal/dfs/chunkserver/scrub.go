package chunkserver

import (
	"context"
	"errors"
	"time"
)

// scrubLoop verifies every block of every chunk against its CRC, at most
// ScrubRate bytes per second, pass after pass with ScrubPause between
// passes. A bad block is reported to the master like one found by a read.
func (s *Server) scrubLoop(ctx context.Context) {
	rate := s.cfg.ScrubRate
	if rate == 0 {
		rate = DefaultScrubRate
	}
	pause := s.cfg.ScrubPause
	if pause == 0 {
		pause = time.Minute
	}
	for {
		start := time.Now()
		n := s.scrubPass(ctx, rate)
		if ctx.Err() != nil {
			return
		}
		if n > 0 {
			s.log.Debug("scrub pass done", "blocks", n, "took", time.Since(start).String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

// scrubPass checks every chunk once and returns the number of blocks checked.
func (s *Server) scrubPass(ctx context.Context, rate int64) int {
	buf := make([]byte, BlockSize)
	per := time.Duration(int64(time.Second) * BlockSize / rate)
	next := time.Now()
	n := 0
	for id, c := range s.store.chunkList() {
		for i, nb := 0, c.blocks(); i < nb; i++ {
			if ctx.Err() != nil || !s.store.held(id, c) {
				break
			}
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					return n
				case <-time.After(d):
				}
			}
			if floor := time.Now().Add(-time.Second); next.Before(floor) {
				next = floor // no catching up after a long pause
			}
			next = next.Add(per)
			n++
			err := c.verifyBlock(i, buf)
			var be *BlockError
			if errors.As(err, &be) {
				s.reportBad(ctx, be)
				break // the rest of this copy is the master's call now
			}
		}
	}
	return n
}
