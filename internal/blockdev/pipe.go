package blockdev

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// Pipe is a kernel pipe that carries read data from one socket to another without
// copying it through user memory: splice(2) moves references to the socket buffers'
// pages into the pipe, and from the pipe into the other socket. A network frontend
// (NBD) gives one to a device that can fill it (PipeReader), then splices it into its
// reply. A Pipe is used by one goroutine at a time.
type Pipe struct {
	r, w int // read and write ends, non-blocking
	size int // capacity in bytes as the kernel reports it
	n    int // bytes in the pipe
}

// ErrPipeFull is returned by Pipe.ReadFrom when the pipe cannot take more although the
// socket has data: the kernel's pipe slots hold page fragments, so a pipe may fill
// before Cap bytes. The caller falls back to reading through memory.
var ErrPipeFull = errors.New("pipe full")

// NewPipe makes a pipe that holds at least size bytes of whole pages.
func NewPipe(size int) (*Pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	p := &Pipe{r: fds[0], w: fds[1]}
	got, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, size)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("pipe of %d bytes: %w", size, err)
	}
	p.size = got
	return p, nil
}

// Cap is the pipe's capacity as the kernel counts it: slots of a page each. Spliced
// socket data may fill slots with larger page fragments, so the pipe often holds more.
func (p *Pipe) Cap() int { return p.size }

// Len is how many bytes the pipe holds.
func (p *Pipe) Len() int { return p.n }

// Close releases the pipe.
func (p *Pipe) Close() error {
	unix.Close(p.r)
	return unix.Close(p.w)
}

// Write copies b into the pipe (for bytes a reader already holds in memory).
func (p *Pipe) Write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Write(p.w, b[done:])
		if n > 0 {
			done += n
			p.n += n
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return done, ErrPipeFull
		}
		if err != nil {
			return done, fmt.Errorf("pipe write: %w", err)
		}
	}
	return done, nil
}

// ReadFrom moves exactly n bytes from the socket behind rc into the pipe, waiting for
// them as a read would. It fails with ErrPipeFull when the pipe has no room left while
// the socket has data; the bytes moved so far stay in the pipe (Len).
func (p *Pipe) ReadFrom(rc syscall.RawConn, n int) error {
	left := n
	var serr error
	for left > 0 {
		err := rc.Read(func(fd uintptr) bool {
			for try := 0; ; try++ {
				m, err := unix.Splice(int(fd), nil, p.w, nil, left, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				switch {
				case m > 0:
					left -= int(m)
					p.n += int(m)
					serr = nil
					return true
				case err == unix.EINTR:
					continue
				case err == unix.EAGAIN:
					// Either the socket is empty (wait for it: the poller wakes
					// us when data comes) or the pipe is full, which waiting
					// would not change (the socket is already readable).
					avail, ierr := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
					if ierr != nil || avail == 0 {
						return false
					}
					if try >= 2 {
						serr = ErrPipeFull
						return true
					}
				case err != nil:
					serr = fmt.Errorf("splice from socket: %w", err)
					return true
				default: // 0 bytes: the peer closed the connection
					serr = fmt.Errorf("splice from socket: %w", unix.ECONNRESET)
					return true
				}
			}
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
	}
	return nil
}

// WriteTo moves all the pipe holds into the socket behind rc, waiting for room as a
// write would.
func (p *Pipe) WriteTo(rc syscall.RawConn) error {
	var serr error
	for p.n > 0 {
		err := rc.Write(func(fd uintptr) bool {
			m, err := unix.Splice(p.r, nil, int(fd), nil, p.n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			switch {
			case m > 0:
				p.n -= int(m)
				serr = nil
				return true
			case err == unix.EINTR:
				return false
			case err == unix.EAGAIN: // the socket's send buffer is full: wait for room
				return false
			case err != nil:
				serr = fmt.Errorf("splice to socket: %w", err)
				return true
			default:
				serr = fmt.Errorf("splice to socket: pipe empty with %d bytes expected", p.n)
				return true
			}
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
	}
	return nil
}

// Read copies up to len(b) of the bytes the pipe holds into b; 0 and io.EOF when it
// holds none. (Frontends splice; tests and fallbacks read.)
func (p *Pipe) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	for {
		m, err := unix.Read(p.r, b[:min(len(b), p.n)])
		if err == unix.EINTR {
			continue
		}
		if m > 0 {
			p.n -= m
			return m, nil
		}
		return 0, fmt.Errorf("pipe read with %d bytes held: %v", p.n, err)
	}
}

// Reset discards what the pipe holds.
func (p *Pipe) Reset() error {
	if p.n == 0 {
		return nil
	}
	var buf [64 << 10]byte
	for p.n > 0 {
		m, err := unix.Read(p.r, buf[:min(p.n, len(buf))])
		if m > 0 {
			p.n -= m
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil || m == 0 {
			return fmt.Errorf("pipe reset with %d bytes left: %v", p.n, err)
		}
	}
	return nil
}

// PipeReader is a Device that can deliver read data into a Pipe instead of memory.
type PipeReader interface {
	// ReadAtPipe reads len(p) bytes at off. When it can, the data goes into pipe and
	// piped is true; otherwise (or after a failure of the piped path) the data is in
	// p, and the pipe is left empty. On error the pipe is left empty.
	ReadAtPipe(pipe *Pipe, p []byte, off int64) (piped bool, err error)
}
