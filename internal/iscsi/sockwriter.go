package iscsi

import (
	"io"
	"net"
)

// SockWriter buffers the small pieces of outgoing PDUs (headers, digests, padding,
// sense data) and sends each large data segment straight from the caller's buffer,
// together with what is buffered before it, in one writev: a data segment is never
// copied in user space (bufio.Writer copies almost all of it). Large writes are sent
// before Write returns, so the caller may reuse the buffer at once. The target sends
// Data-In through it and the initiator immediate data and Data-Out.
type SockWriter struct {
	w    io.Writer // the connection; net.Buffers uses writev on a *net.TCPConn
	buf  []byte
	iov  [2][]byte
	bufs net.Buffers // over iov; a field, so that WriteTo allocates nothing
}

const (
	// SockDirect is the size from which a write goes out from the caller's buffer.
	SockDirect = 16 << 10
	// sockFlushAt is how much small data is buffered before it is sent anyway.
	sockFlushAt = 64 << 10
)

// NewSockWriter returns a SockWriter on w (normally a net.Conn).
func NewSockWriter(w io.Writer) *SockWriter {
	return &SockWriter{w: w, buf: make([]byte, 0, sockFlushAt+SockDirect)}
}

func (s *SockWriter) Write(p []byte) (int, error) {
	if len(p) < SockDirect {
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
func (s *SockWriter) Flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	return err
}
