package initiator

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// Commander runs SCSI commands on a LUN: a Session does, and so does a multipath
// device that picks a path per command.
type Commander interface {
	Execute(ctx context.Context, lun uint64, cdb, dataOut, dataIn []byte) (Result, error)
}

// LUN is a remote logical unit as a blockdev.Device: READ/WRITE(16), SYNCHRONIZE
// CACHE(16), UNMAP and WRITE SAME when the target offers thin provisioning, and the
// identity from VPD page 0x83.
//
// A Device call has no context (see docs/decisions/2026-11-22-device-interface.md): a
// LUN uses the context it was opened with, and relies on the Commander to fail
// commands of a dead path (the session's NOP-Out timeout) instead of hanging.
type LUN struct {
	ctx      context.Context
	c        Commander
	lun      uint64
	size     int64
	bs       int
	maxXfer  int // bytes per READ or WRITE
	thin     bool
	maxUnmap uint32 // blocks per UNMAP descriptor
	wce      bool
	readOnly bool
	id       string
}

var (
	_ blockdev.Device      = (*LUN)(nil)
	_ blockdev.FUAWriter   = (*LUN)(nil)
	_ blockdev.Unmapper    = (*LUN)(nil)
	_ blockdev.WriteCacher = (*LUN)(nil)
	_ blockdev.ReadOnlyer  = (*LUN)(nil)
	_ blockdev.Identifier  = (*LUN)(nil)
)

// SenseError is a command that ended in CHECK CONDITION or another bad status.
type SenseError struct {
	Op             byte
	Status         byte
	Key, ASC, ASCQ byte
}

func (e *SenseError) Error() string {
	if e.Status == 0x02 {
		return fmt.Sprintf("SCSI op %#02x: check condition, sense key %#x asc/ascq %#02x/%#02x", e.Op, e.Key, e.ASC, e.ASCQ)
	}
	return fmt.Sprintf("SCSI op %#02x: status %#02x", e.Op, e.Status)
}

func parseSense(op byte, r Result) *SenseError {
	e := &SenseError{Op: op, Status: r.Status}
	s := r.Sense
	switch {
	case len(s) >= 14 && s[0]&0x7f >= 0x70 && s[0]&0x7f <= 0x71:
		e.Key, e.ASC, e.ASCQ = s[2]&0xf, s[12], s[13]
	case len(s) >= 4 && s[0]&0x7f >= 0x72:
		e.Key, e.ASC, e.ASCQ = s[1]&0xf, s[2], s[3]
	}
	return e
}

// IsUnitAttention reports whether err is a UNIT ATTENTION condition.
func IsUnitAttention(err error) bool {
	var se *SenseError
	return errors.As(err, &se) && se.Status == 0x02 && se.Key == 0x6
}

// Command runs one command and turns a bad status into a *SenseError, retrying a few
// times on UNIT ATTENTION (reported once per event; the command itself did not run).
func Command(ctx context.Context, c Commander, lun uint64, cdb, out, in []byte) (Result, error) {
	for try := 0; ; try++ {
		r, err := c.Execute(ctx, lun, cdb, out, in)
		if err != nil {
			return r, err
		}
		if r.Status == 0 {
			return r, nil
		}
		serr := parseSense(cdb[0], r)
		if try < 8 && (IsUnitAttention(serr) || r.Status == 0x08) { // UA or BUSY
			continue
		}
		return r, serr
	}
}

// OpenLUN probes a LUN through c (capacity, limits, identity) and returns it as a
// Device. ctx bounds the probe and is then used for every I/O of the device.
func OpenLUN(ctx context.Context, c Commander, lun uint64) (*LUN, error) {
	l := &LUN{ctx: ctx, c: c, lun: lun, maxXfer: 1 << 20, maxUnmap: 1 << 16}
	if _, err := Command(ctx, c, lun, []byte{0x00, 0, 0, 0, 0, 0}, nil, nil); err != nil { // TEST UNIT READY
		return nil, fmt.Errorf("LUN %d: test unit ready: %w", lun, err)
	}
	buf := make([]byte, 32)
	if _, err := Command(ctx, c, lun, []byte{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, nil, buf); err == nil {
		l.size = int64(binary.BigEndian.Uint64(buf)+1) * int64(binary.BigEndian.Uint32(buf[8:]))
		l.bs = int(binary.BigEndian.Uint32(buf[8:]))
		l.thin = buf[14]&0x80 != 0 // LBPME
	} else {
		if _, err := Command(ctx, c, lun, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, buf[:8]); err != nil {
			return nil, fmt.Errorf("LUN %d: read capacity: %w", lun, err)
		}
		l.bs = int(binary.BigEndian.Uint32(buf[4:]))
		l.size = int64(binary.BigEndian.Uint32(buf)+1) * int64(l.bs)
	}
	if l.bs != 512 && l.bs != 4096 {
		return nil, fmt.Errorf("LUN %d: block size %d: only 512 and 4096 are supported", lun, l.bs)
	}
	l.probeVPD(ctx)
	// MODE SENSE(6), caching page: WCE.
	ms := make([]byte, 64)
	if r, err := Command(ctx, c, lun, []byte{0x1a, 0x08, 0x08, 0, 64, 0}, nil, ms); err == nil && r.DataIn >= 4+3 {
		l.readOnly = ms[2]&0x80 != 0
		if p := 4 + int(ms[3]); p+2 < r.DataIn && ms[p]&0x3f == 0x08 {
			l.wce = ms[p+2]&0x04 != 0
		}
	} else {
		l.wce = true // unknown: assume a volatile cache, so flushes are sent
	}
	return l, nil
}

// Identify reads a LUN's identity (VPD page 0x83) through c: what multipath groups
// paths by. It works on a path whose target port is in ALUA standby or unavailable.
func Identify(ctx context.Context, c Commander, lun uint64) (string, error) {
	b := make([]byte, 252)
	r, err := Command(ctx, c, lun, []byte{0x12, 0x01, 0x83, 0, 252, 0}, nil, b)
	if err != nil {
		return "", fmt.Errorf("LUN %d: device identification: %w", lun, err)
	}
	if r.DataIn < 4 || b[1] != 0x83 {
		return "", fmt.Errorf("LUN %d: device identification: bad page", lun)
	}
	return designator(b[4:min(r.DataIn, 4+int(binary.BigEndian.Uint16(b[2:])))]), nil
}

func (l *LUN) probeVPD(ctx context.Context) {
	vpd := func(page byte) []byte {
		b := make([]byte, 252)
		r, err := Command(ctx, l.c, l.lun, []byte{0x12, 0x01, page, 0, 252, 0}, nil, b)
		if err != nil || r.DataIn < 4 || b[1] != page {
			return nil
		}
		return b[:min(r.DataIn, 4+int(binary.BigEndian.Uint16(b[2:])))]
	}
	if p := vpd(0x83); p != nil {
		l.id = designator(p[4:])
	}
	if p := vpd(0xb0); len(p) >= 16 {
		if n := binary.BigEndian.Uint32(p[8:]); n > 0 && int64(n)*int64(l.bs) < int64(l.maxXfer) {
			l.maxXfer = int(n) * l.bs
		}
		if len(p) >= 28 {
			if n := binary.BigEndian.Uint32(p[20:]); n > 0 && n < l.maxUnmap {
				l.maxUnmap = n
			}
		}
	}
	if p := vpd(0xb2); len(p) >= 6 && l.thin {
		l.thin = p[5]&0x80 != 0 // LBPU: UNMAP supported
	}
}

// designator picks the best identity from VPD 0x83 descriptors: NAA, then EUI-64,
// then T10 vendor ID; the same value the kernel's multipath would group paths by.
func designator(d []byte) string {
	best, bestRank := "", 0
	for len(d) >= 4 {
		n := int(d[3])
		if 4+n > len(d) {
			break
		}
		typ, assoc, body := d[1]&0xf, (d[1]>>4)&3, d[4:4+n]
		rank := map[byte]int{3: 3, 2: 2, 1: 1}[typ]
		if assoc == 0 && rank > bestRank {
			bestRank = rank
			if typ == 1 {
				best = "t10." + string(body)
			} else {
				best = map[byte]string{3: "naa.", 2: "eui."}[typ] + hex.EncodeToString(body)
			}
		}
		d = d[4+n:]
	}
	return best
}

func (l *LUN) Size() int64             { return l.size }
func (l *LUN) BlockSize() int          { return l.bs }
func (l *LUN) WriteCacheEnabled() bool { return l.wce }
func (l *LUN) ReadOnly() bool          { return l.readOnly }

// DeviceID is the LUN's identity from VPD 0x83 (e.g. "naa.6001405..."), the same
// through every path.
func (l *LUN) DeviceID() string { return l.id }

func rw16(op byte, fua bool, lba uint64, blocks uint32) []byte {
	cdb := make([]byte, 16)
	cdb[0] = op
	if fua {
		cdb[1] = 0x08
	}
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], blocks)
	return cdb
}

func (l *LUN) ReadAt(p []byte, off int64) (int, error) {
	if err := blockdev.CheckRange(l, off, int64(len(p))); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		n := min(len(p)-done, l.maxXfer)
		lba := uint64(off+int64(done)) / uint64(l.bs)
		if _, err := Command(l.ctx, l.c, l.lun, rw16(0x88, false, lba, uint32(n/l.bs)), nil, p[done:done+n]); err != nil {
			return done, fmt.Errorf("read LUN %d LBA %d: %w", l.lun, lba, err)
		}
		done += n
	}
	return done, nil
}

func (l *LUN) WriteAt(p []byte, off int64) (int, error) { return l.write(p, off, false) }

func (l *LUN) WriteAtFUA(p []byte, off int64) (int, error) { return l.write(p, off, true) }

func (l *LUN) write(p []byte, off int64, fua bool) (int, error) {
	if err := blockdev.CheckRange(l, off, int64(len(p))); err != nil {
		return 0, err
	}
	piece := l.maxXfer
	if u, ok := l.c.(unsolicitedWriter); ok {
		if n := u.Unsolicited() / l.bs * l.bs; n >= minWritePiece && n < piece {
			piece = n
		}
	}
	done := 0
	for done < len(p) {
		n := min(len(p)-done, l.maxXfer)
		if k, err := l.writeSpan(p[done:done+n], off+int64(done), fua, piece); err != nil {
			return done + k, err
		}
		done += n
	}
	return done, nil
}

// minWritePiece is the smallest piece a write is split into. A target that takes less
// unsolicited data (tgt: 8 KiB of immediate data) gets writes of maxXfer bytes and R2Ts,
// as before: many small commands cost more than the round trip they save. (Split
// writes once made a write with no path left hang in the multipath drill against tgt:
// all their data leaves at once, so a cut link filled the socket's send buffer, the
// writer blocked holding the connection, and so did the NOP-Out that should have
// detected the cut. Session.keepalive no longer waits for the writer; see
// TestCutLinkUnderSplitWritesFails and multipath's TestSplitWritesWhosePathsDie.)
const minWritePiece = 64 << 10

// unsolicitedWriter is a Commander that tells how much write data a command carries
// without waiting for an R2T (Session, Client and multipath.Map).
type unsolicitedWriter interface{ Unsolicited() int }

// writeSpan writes p (at most maxXfer bytes) at off. A span longer than piece goes out
// as commands of piece bytes, all sent at once: each carries its data unsolicited, so
// the span takes one round trip instead of waiting for R2Ts after the first burst. It
// returns how many bytes before the first failed piece were written.
func (l *LUN) writeSpan(p []byte, off int64, fua bool, piece int) (int, error) {
	one := func(k int) error {
		n := min(len(p)-k, piece)
		lba := uint64(off+int64(k)) / uint64(l.bs)
		if _, err := Command(l.ctx, l.c, l.lun, rw16(0x8a, fua, lba, uint32(n/l.bs)), p[k:k+n], nil); err != nil {
			return fmt.Errorf("write LUN %d LBA %d: %w", l.lun, lba, err)
		}
		return nil
	}
	if len(p) <= piece {
		return 0, one(0)
	}
	errs := make([]error, (len(p)+piece-1)/piece)
	var wg sync.WaitGroup
	for i := 1; i < len(errs); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = one(i * piece)
		}()
	}
	errs[0] = one(0)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return i * piece, err
		}
	}
	return 0, nil
}

// Flush sends SYNCHRONIZE CACHE(16) for the whole LUN.
func (l *LUN) Flush() error {
	if _, err := Command(l.ctx, l.c, l.lun, []byte{0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, nil); err != nil {
		return fmt.Errorf("flush LUN %d: %w", l.lun, err)
	}
	return nil
}

// Unmap sends UNMAP when the target provisions thinly, and writes zeroes otherwise.
func (l *LUN) Unmap(off, length int64) error {
	if err := blockdev.CheckRange(l, off, length); err != nil {
		return err
	}
	if !l.thin {
		return blockdev.WriteZeroes(struct{ blockdev.Device }{l}, off, length)
	}
	lba, blocks := uint64(off/int64(l.bs)), uint64(length/int64(l.bs))
	for blocks > 0 {
		n := min(blocks, uint64(l.maxUnmap))
		param := make([]byte, 24)
		binary.BigEndian.PutUint16(param, 22)
		binary.BigEndian.PutUint16(param[2:], 16)
		binary.BigEndian.PutUint64(param[8:], lba)
		binary.BigEndian.PutUint32(param[16:], uint32(n))
		if _, err := Command(l.ctx, l.c, l.lun, []byte{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}, param, nil); err != nil {
			return fmt.Errorf("unmap LUN %d LBA %d+%d: %w", l.lun, lba, n, err)
		}
		lba += n
		blocks -= n
	}
	return nil
}
