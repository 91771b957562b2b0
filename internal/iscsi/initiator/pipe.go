package initiator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// Reads into a pipe. A frontend that relays read data to another socket (NBD) gives
// the read a blockdev.Pipe: the session's reader then splices each Data-In segment
// from the connection into the pipe, and the frontend splices the pipe into its reply,
// so the data never passes through user memory (two copies of every byte saved).
//
// The pipe rides in the command's context (WithPipe), so that every layer between the
// LUN and the session (multipath, session recovery) passes it on unchanged; each try
// of the command on a session starts by emptying it. A session uses the pipe only
// when it can: the connection is a socket (syscall.Conn) and no data digest is
// negotiated (a digest needs the bytes in memory). Otherwise, and when a Data-In comes
// out of order or the pipe fills, the data goes to the command's buffer as usual.

type pipeKey struct{}

// WithPipe returns a context whose read commands may deliver their data into p.
func WithPipe(ctx context.Context, p *blockdev.Pipe) context.Context {
	return context.WithValue(ctx, pipeKey{}, p)
}

func pipeFrom(ctx context.Context) *blockdev.Pipe {
	p, _ := ctx.Value(pipeKey{}).(*blockdev.Pipe)
	return p
}

// errPipeFallback: the command's data went partly into its pipe and partly into its
// buffer (a Data-In out of order, or the pipe full); it must be read again.
var errPipeFallback = errors.New("read into pipe abandoned")

// capReader is the reader under the session's bufio.Reader. While exact is set, each
// read asks the connection for at most max bytes, so that reading a PDU header does
// not pull the data segment after it into the buffer, from where it would have to be
// copied instead of spliced.
type capReader struct {
	r     io.Reader
	exact bool
	max   int
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.exact && len(p) > c.max {
		p = p[:c.max]
	}
	return c.r.Read(p)
}

// spliceIn moves the n-byte data segment at the head of br into pipe: first what br
// already buffered (copied), then the rest straight from the connection (spliced).
// When the pipe fills, the rest of the segment is read into dst[moved:] and fell is
// true: the caller gives up the pipe for this command.
func (s *Session) spliceIn(br *bufio.Reader, pipe *blockdev.Pipe, dst []byte) (fell bool, err error) {
	n := len(dst)
	start := pipe.Len()
	if k := min(br.Buffered(), n); k > 0 {
		b, _ := br.Peek(k)
		w, werr := pipe.Write(b)
		br.Discard(w)
		if werr != nil {
			if !errors.Is(werr, blockdev.ErrPipeFull) {
				return false, werr
			}
			s.cr.exact = false // the rest goes through memory: read it in large pieces
			_, err = io.ReadFull(br, dst[w:])
			return true, err
		}
	}
	if moved := pipe.Len() - start; moved < n {
		err = pipe.ReadFrom(s.rc, n-moved)
		if errors.Is(err, blockdev.ErrPipeFull) {
			s.cr.exact = false
			_, err = io.ReadFull(br, dst[pipe.Len()-start:])
			return true, err
		}
	}
	return false, err
}

// ReadAtPipe reads len(p) bytes at off, into pipe when the sessions can (piped true)
// and into p otherwise (see WithPipe). The read is one command, so it must not exceed
// the LUN's maximum transfer; a larger one is read into p.
func (l *LUN) ReadAtPipe(pipe *blockdev.Pipe, p []byte, off int64) (piped bool, err error) {
	if err := blockdev.CheckRange(l, off, int64(len(p))); err != nil {
		return false, err
	}
	if len(p) > l.maxXfer || len(p) == 0 {
		_, err := l.ReadAt(p, off)
		return false, err
	}
	lba := uint64(off) / uint64(l.bs)
	r, err := Command(WithPipe(l.ctx, pipe), l.c, l.lun, rw16(0x88, false, lba, uint32(len(p)/l.bs)), nil, p)
	if errors.Is(err, errPipeFallback) {
		_, err = l.ReadAt(p, off)
		return false, err
	}
	if err != nil {
		pipe.Reset()
		return false, fmt.Errorf("read LUN %d LBA %d: %w", l.lun, lba, err)
	}
	if r.Piped && pipe.Len() != len(p) {
		pipe.Reset()
		return false, fmt.Errorf("read LUN %d LBA %d: %d bytes of %d arrived", l.lun, lba, pipe.Len(), len(p))
	}
	return r.Piped, nil
}

var _ blockdev.PipeReader = (*LUN)(nil)
