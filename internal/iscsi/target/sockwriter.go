package target

import (
	"io"
	"net"
)

// sockWriter buffers the small pieces of outgoing PDUs (headers, digests, padding,
// sense data) and sends each large data segment straight from the caller's buffer,
// together with what is buffered before it, in one writev: a Data-In payload is never
// copied in user space (bufio.Writer copies almost all of it). Large writes are sent
// before Write returns, so the caller may reuse the buffer at once.
type sockWriter struct {
	w    io.Writer // the connection; net.Buffers uses writev on a *net.TCPConn
	buf  []byte
	iov  [2][]byte
	bufs net.Buffers // over iov; a field, so that WriteTo allocates nothing
}

const (
	// sockDirect is the size from which a write goes out from the caller's buffer.
	sockDirect = 16 << 10
	// sockFlushAt is how much small data is buffered before it is sent anyway.
	sockFlushAt = 64 << 10
)

func newSockWriter(w io.Writer) *sockWriter {
	return &sockWriter{w: w, buf: make([]byte, 0, sockFlushAt+sockDirect)}
}

func (s *sockWriter) Write(p []byte) (int, error) {
	if len(p) < sockDirect {
		s.buf = append(s.buf, p...)
		if len(s.buf) >= sockFlushAt {
			return len(p), s.Flush()
		}
		return len(p), nil
	}
	if len(s.buf) == 0 {
		return s.w.Write(p)
	}
	s.iov[0], s.iov[1] = s.buf, p
	s.bufs = s.iov[:]
	_, err := s.bufs.WriteTo(s.w)
	s.iov[0], s.iov[1], s.bufs = nil, nil, nil
	s.buf = s.buf[:0]
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush sends what is buffered.
func (s *sockWriter) Flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	return err
}
