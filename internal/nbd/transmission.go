package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// transmission serves one connection's requests: a reader decodes requests, each runs
// in its own goroutine (at most maxInFlight at once), and replies are written whole,
// under a mutex, in the order requests finish (NBD matches them by handle).
type transmission struct {
	dev  blockdev.Device
	r    *bufio.Reader
	w    io.Writer
	wmu  sync.Mutex
	sem  chan struct{}
	wg   sync.WaitGroup
	bufs sync.Pool
	ua   *blockdev.Unaligned

	// Reads of a device that can fill a pipe (blockdev.PipeReader) are spliced from
	// the pipe into the connection, so their data never passes through user memory.
	pdev    blockdev.PipeReader // nil: no piped reads
	rc      syscall.RawConn
	pmu     sync.Mutex
	pipes   []*blockdev.Pipe // free pipes
	noPipes atomic.Bool      // making a pipe failed: read through memory from now on
}

// pipeSize is the largest read that goes through a pipe.
const pipeSize = 1 << 20

func newTransmission(ua *blockdev.Unaligned, r *bufio.Reader, w io.Writer, maxInFlight int) *transmission {
	t := &transmission{dev: ua.Dev, ua: ua, r: r, w: w, sem: make(chan struct{}, maxInFlight)}
	t.bufs.New = func() any { b := make([]byte, 0, 1<<20); return &b }
	if pr, ok := ua.Dev.(blockdev.PipeReader); ok {
		if sc, ok := w.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				t.pdev, t.rc = pr, rc
			}
		}
	}
	return t
}

// getPipe returns a free pipe, or nil (read through memory) when none can be made.
func (t *transmission) getPipe() *blockdev.Pipe {
	t.pmu.Lock()
	defer t.pmu.Unlock()
	if n := len(t.pipes); n > 0 {
		p := t.pipes[n-1]
		t.pipes = t.pipes[:n-1]
		return p
	}
	p, err := blockdev.NewPipe(pipeSize)
	if err != nil {
		t.noPipes.Store(true) // e.g. over the user's pipe memory limit: stop trying
		return nil
	}
	return p
}

func (t *transmission) putPipe(p *blockdev.Pipe) {
	if p.Len() > 0 && p.Reset() != nil {
		p.Close()
		return
	}
	t.pmu.Lock()
	t.pipes = append(t.pipes, p)
	t.pmu.Unlock()
}

// readPiped serves an aligned read through a pipe; ok is false when it did not (the
// caller reads through memory).
func (t *transmission) readPiped(req request, data []byte) (ok bool) {
	bs := uint64(t.dev.BlockSize())
	if t.pdev == nil || t.noPipes.Load() || req.length > pipeSize || req.offset%bs != 0 || uint64(req.length)%bs != 0 ||
		req.length == 0 || req.offset > uint64(t.dev.Size()) || req.offset+uint64(req.length) > uint64(t.dev.Size()) {
		return false
	}
	p := t.getPipe()
	if p == nil {
		return false
	}
	defer t.putPipe(p)
	piped, err := t.pdev.ReadAtPipe(p, data, int64(req.offset))
	switch {
	case err != nil:
		t.reply(req.handle, errnoOf(err), nil)
	case !piped: // the data is in memory after all
		t.reply(req.handle, 0, data)
	default:
		t.replyPipe(req.handle, p)
	}
	return true
}

func (t *transmission) run(ctx context.Context) error {
	defer func() {
		t.wg.Wait()
		for _, p := range t.pipes {
			p.Close()
		}
	}()
	var hdr [requestSize]byte
	for {
		if _, err := io.ReadFull(t.r, hdr[:]); err != nil {
			return err
		}
		req, err := parseRequest(hdr[:])
		if err != nil {
			return err
		}
		if req.typ == cmdDisc {
			return nil
		}
		if req.length > maxRequestLen && (req.typ == cmdRead || req.typ == cmdWrite) {
			if req.typ == cmdWrite { // the data cannot be skipped safely: drop the client
				return fmt.Errorf("write of %d bytes exceeds %d: %w", req.length, maxRequestLen, ErrProtocol)
			}
			t.reply(req.handle, errOverflow, nil)
			continue
		}
		bp := t.bufs.Get().(*[]byte)
		var data []byte
		if req.typ == cmdWrite || req.typ == cmdRead {
			if cap(*bp) < int(req.length) {
				*bp = make([]byte, req.length)
			}
			data = (*bp)[:req.length]
		}
		if req.typ == cmdWrite {
			if _, err := io.ReadFull(t.r, data); err != nil {
				return err
			}
		}
		select {
		case t.sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer func() { <-t.sem }()
			if req.typ == cmdRead && t.readPiped(req, data) {
				t.bufs.Put(bp)
				return
			}
			errno := t.execute(req, data)
			if req.typ == cmdRead && errno == 0 {
				t.reply(req.handle, 0, data)
			} else {
				t.reply(req.handle, errno, nil)
			}
			t.bufs.Put(bp)
		}()
	}
}

func (t *transmission) reply(handle uint64, errno uint32, data []byte) {
	var h [16]byte
	binary.BigEndian.PutUint32(h[:], magicSimple)
	binary.BigEndian.PutUint32(h[4:], errno)
	binary.BigEndian.PutUint64(h[8:], handle)
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if len(data) == 0 {
		t.w.Write(h[:])
		return
	}
	bufs := net.Buffers{h[:], data}
	bufs.WriteTo(t.w)
}

// replyPipe sends a read's reply with the data the pipe holds. A failure to send
// breaks the connection, which is closed so that the client sees it.
func (t *transmission) replyPipe(handle uint64, p *blockdev.Pipe) {
	var h [16]byte
	binary.BigEndian.PutUint32(h[:], magicSimple)
	binary.BigEndian.PutUint64(h[8:], handle)
	t.wmu.Lock()
	defer t.wmu.Unlock()
	var serr error
	sent := 0
	err := t.rc.Write(func(fd uintptr) bool {
		// MSG_MORE: the header leaves with the data that follows, not alone.
		for sent < len(h) {
			n, err := unix.SendmsgN(int(fd), h[sent:], nil, nil, unix.MSG_MORE)
			if n > 0 {
				sent += n
			}
			if err == unix.EAGAIN {
				return false
			}
			if err != nil && err != unix.EINTR {
				serr = err
				return true
			}
		}
		return true
	})
	if err == nil {
		err = serr
	}
	if err == nil {
		err = p.WriteTo(t.rc)
	}
	if err != nil {
		if c, ok := t.w.(io.Closer); ok {
			c.Close()
		}
	}
}

// execute runs one request and returns its NBD error number (0 for success).
func (t *transmission) execute(req request, data []byte) uint32 {
	d := t.dev
	off, n := int64(req.offset), int64(req.length)
	if req.typ != cmdFlush && (off < 0 || off+n > d.Size() || off+n < off) {
		if req.typ == cmdWrite || req.typ == cmdTrim || req.typ == cmdWriteZeroes {
			return errNoSpc
		}
		return errInval
	}
	writing := req.typ == cmdWrite || req.typ == cmdTrim || req.typ == cmdWriteZeroes
	if writing && blockdev.IsReadOnly(d) {
		return errPerm
	}
	var err error
	switch req.typ {
	case cmdRead:
		err = t.readAt(data, off)
	case cmdWrite:
		err = t.writeAt(data, off, req.flags&cmdFlagFUA != 0)
	case cmdFlush:
		err = d.Flush()
	case cmdTrim:
		err = t.zero(off, n, true)
	case cmdWriteZeroes:
		err = t.zero(off, n, req.flags&cmdFlagNoHole == 0)
	case cmdCache:
		return 0
	default:
		return errInval
	}
	if err == nil && writing && req.typ != cmdWrite && req.flags&cmdFlagFUA != 0 {
		err = d.Flush()
	}
	return errnoOf(err)
}

func errnoOf(err error) uint32 {
	var en syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, blockdev.ErrReadOnly):
		return errPerm
	case errors.Is(err, blockdev.ErrOutOfRange), errors.Is(err, blockdev.ErrUnaligned):
		return errInval
	case errors.Is(err, blockdev.ErrUnsupported):
		return errNotSup
	case errors.As(err, &en) && en == syscall.ENOSPC:
		return errNoSpc
	default:
		return errIO
	}
}
