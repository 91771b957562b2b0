package volume

// Parts: "part:N/M:SPEC" is the N-th of M equal parts of the volume SPEC, the way a
// partition table cuts a disk into partitions (the seed lab's mpatha1, mpathb1), so
// one volume can be exported as several LUNs or used by several consumers.
//
// Every part of the same SPEC (opened with the same options) in a process shares one
// opened SPEC: a raid: array is assembled once, holds its lock and control socket
// once, and is closed when the last of its parts is. This kind lives here rather than
// in a package of its own because it opens other volumes through Open.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

func init() { Register("part", openPart) }

// PartAlign is the alignment of every part's start and size (1 MiB, as fdisk aligns
// partitions), so a part never splits a RAID stripe of the usual chunk sizes.
const PartAlign = 1 << 20

// maxParts bounds M, so a typo cannot ask for a million slivers.
const maxParts = 128

// ParsePart splits "part:N/M:SPEC" into N (1-based), M and SPEC.
func ParsePart(spec string) (n, m int, inner string, err error) {
	rest, ok := strings.CutPrefix(spec, "part:")
	if !ok {
		return 0, 0, "", fmt.Errorf("part volume spec %q: want part:N/M:SPEC", spec)
	}
	nm, inner, ok := strings.Cut(rest, ":")
	if !ok || inner == "" {
		return 0, 0, "", fmt.Errorf("part volume spec %q: want part:N/M:SPEC (the volume to cut is missing)", spec)
	}
	ns, ms, ok := strings.Cut(nm, "/")
	n, errN := strconv.Atoi(ns)
	m, errM := strconv.Atoi(ms)
	if !ok || errN != nil || errM != nil || m < 1 || m > maxParts || n < 1 || n > m {
		return 0, 0, "", fmt.Errorf("part volume spec %q: %q must be N/M with 1 <= N <= M <= %d", spec, nm, maxParts)
	}
	return n, m, inner, nil
}

// PartRange is where part n of m lies in a volume of size bytes: equal parts of a
// whole number of align units each (the tail that does not divide evenly is unused).
func PartRange(size int64, n, m int, align int64) (off, length int64) {
	length = size / int64(m) / align * align
	return int64(n-1) * length, length
}

func openPart(ctx context.Context, spec string, opts Options) (blockdev.Device, error) {
	n, m, inner, err := ParsePart(spec)
	if err != nil {
		return nil, err
	}
	if opts.Create {
		return nil, fmt.Errorf("open volume %s: a part cannot create its volume: create %s first", spec, inner)
	}
	sh, err := openShared(ctx, inner, opts)
	if err != nil {
		return nil, fmt.Errorf("open volume %s: %w", spec, err)
	}
	align := max(int64(PartAlign), int64(sh.dev.BlockSize()))
	off, length := PartRange(sh.dev.Size(), n, m, align)
	if length == 0 {
		sh.release()
		return nil, fmt.Errorf("open volume %s: %s has %d bytes, too small for %d parts of whole MiB", spec, inner, sh.dev.Size(), m)
	}
	p := &Part{sh: sh, dev: sh.dev, off: off, size: length, id: fmt.Sprintf("part%d/%d", n, m)}
	if _, ok := sh.dev.(blockdev.Unmapper); ok {
		// Only a thin parent makes a thin part: the SCSI layer advertises thin
		// provisioning for any Unmapper.
		return &thinPart{p}, nil
	}
	return p, nil
}

// Part is one part of a shared volume: its I/O is the volume's, shifted by the part's
// offset and bounded to its size.
type Part struct {
	sh        *shared
	dev       blockdev.Device
	off, size int64
	id        string
	closeOnce sync.Once
}

// thinPart is a part of a volume that can unmap.
type thinPart struct{ *Part }

var (
	_ blockdev.Unmapper          = (*thinPart)(nil)
	_ blockdev.LBAStatusReporter = (*thinPart)(nil)
	_ blockdev.WriteZeroer       = (*Part)(nil)
	_ blockdev.FUAWriter         = (*Part)(nil)
	_ blockdev.ReadOnlyer        = (*Part)(nil)
	_ blockdev.WriteCacher       = (*Part)(nil)
	_ blockdev.Identifier        = (*Part)(nil)
	_ blockdev.Closer            = (*Part)(nil)
)

// Offset is where the part starts in its volume.
func (p *Part) Offset() int64 { return p.off }

func (p *Part) Size() int64    { return p.size }
func (p *Part) BlockSize() int { return p.dev.BlockSize() }
func (p *Part) Flush() error   { return p.dev.Flush() }

func (p *Part) ReadOnly() bool          { return blockdev.IsReadOnly(p.dev) }
func (p *Part) WriteCacheEnabled() bool { return blockdev.WriteCacheEnabled(p.dev) }

// DeviceID is the volume's identity and the part's place in it.
func (p *Part) DeviceID() string {
	if id, ok := p.dev.(blockdev.Identifier); ok {
		return id.DeviceID() + "/" + p.id
	}
	return p.sh.key + "/" + p.id
}

func (p *Part) ReadAt(b []byte, off int64) (int, error) {
	if err := blockdev.CheckRange(p, off, int64(len(b))); err != nil {
		return 0, err
	}
	return p.dev.ReadAt(b, p.off+off)
}

func (p *Part) WriteAt(b []byte, off int64) (int, error) {
	if err := blockdev.CheckRange(p, off, int64(len(b))); err != nil {
		return 0, err
	}
	return p.dev.WriteAt(b, p.off+off)
}

func (p *Part) WriteAtFUA(b []byte, off int64) (int, error) {
	if err := blockdev.CheckRange(p, off, int64(len(b))); err != nil {
		return 0, err
	}
	return blockdev.WriteFUA(p.dev, b, p.off+off)
}

func (p *Part) WriteZeroes(off, length int64) error {
	if err := blockdev.CheckRange(p, off, length); err != nil {
		return err
	}
	return blockdev.WriteZeroes(p.dev, p.off+off, length)
}

func (p *thinPart) Unmap(off, length int64) error {
	if err := blockdev.CheckRange(p, off, length); err != nil {
		return err
	}
	return blockdev.Unmap(p.dev, p.off+off, length)
}

// MappedExtent asks the volume and clips its answer to the part.
func (p *thinPart) MappedExtent(off int64) (blockdev.Extent, error) {
	if off < 0 || off >= p.size {
		return blockdev.Extent{}, fmt.Errorf("extent at %d of %d bytes: %w", off, p.size, blockdev.ErrOutOfRange)
	}
	r, ok := p.dev.(blockdev.LBAStatusReporter)
	if !ok {
		return blockdev.Extent{Off: off, Length: p.size - off, Mapped: true}, nil
	}
	e, err := r.MappedExtent(p.off + off)
	if err != nil {
		return e, err
	}
	end := min(e.Off+e.Length, p.off+p.size)
	return blockdev.Extent{Off: e.Off - p.off, Length: end - e.Off, Mapped: e.Mapped}, nil
}

// Close releases the part; the volume closes with its last part. A second Close is a
// no-op.
func (p *Part) Close() error {
	var err error
	p.closeOnce.Do(func() { err = p.sh.release() })
	return err
}

// shared is a volume opened once for all its parts.
type shared struct {
	key    string        // the volume's spec
	mapKey string        // its key in sharedVols: spec and options
	ready  chan struct{} // closed when dev or err is set
	dev    blockdev.Device
	err    error
	refs   int // guarded by sharedMu
}

var (
	sharedMu   sync.Mutex
	sharedVols = map[string]*shared{}
)

// openShared opens spec, or takes one more reference to it if a part already holds it
// open with the same options. The open itself runs outside sharedMu, so a part of a
// part (or of an array of parts) does not deadlock.
func openShared(ctx context.Context, spec string, opts Options) (*shared, error) {
	key := fmt.Sprintf("%s\x00ro=%t bs=%d", spec, opts.ReadOnly, opts.BlockSize)
	sharedMu.Lock()
	if sh := sharedVols[key]; sh != nil {
		sh.refs++
		sharedMu.Unlock()
		<-sh.ready
		if sh.err != nil {
			sh.release()
			return nil, sh.err
		}
		return sh, nil
	}
	sh := &shared{key: spec, mapKey: key, ready: make(chan struct{}), refs: 1}
	sharedVols[key] = sh
	sharedMu.Unlock()

	sh.dev, sh.err = Open(ctx, spec, Options{ReadOnly: opts.ReadOnly, BlockSize: opts.BlockSize})
	if sh.err != nil {
		sharedMu.Lock()
		delete(sharedVols, key)
		sharedMu.Unlock()
	}
	close(sh.ready)
	if sh.err != nil {
		return nil, sh.err
	}
	return sh, nil
}

// release drops one reference and closes the volume with the last one.
func (sh *shared) release() error {
	sharedMu.Lock()
	sh.refs--
	last := sh.refs == 0 && sh.err == nil
	if last && sharedVols[sh.mapKey] == sh {
		delete(sharedVols, sh.mapKey)
	}
	sharedMu.Unlock()
	if !last {
		return nil
	}
	return blockdev.Close(sh.dev)
}
