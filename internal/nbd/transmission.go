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
	"syscall"

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
}

func newTransmission(ua *blockdev.Unaligned, r *bufio.Reader, w io.Writer, maxInFlight int) *transmission {
	t := &transmission{dev: ua.Dev, ua: ua, r: r, w: w, sem: make(chan struct{}, maxInFlight)}
	t.bufs.New = func() any { b := make([]byte, 0, 1<<20); return &b }
	return t
}

func (t *transmission) run(ctx context.Context) error {
	defer t.wg.Wait()
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
