// Package chunkserver stores DFS chunks in local data folders and serves them
// over the proto wire format: reads verify a CRC32C per 64 KiB block, and a
// write is forwarded down a replication chain and acknowledged only when every
// replica holds it. See docs/formats/chunk.md and docs/protocols/dfs.md.
package chunkserver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Chunk geometry.
const (
	ChunkSize  = 64 << 20 // bytes of data in a chunk
	BlockSize  = 64 << 10 // bytes covered by one CRC
	NumBlocks  = ChunkSize / BlockSize
	HeaderSize = 8192 // header (fixed part + CRC table), then data
	crcOffset  = 64   // CRC table starts here within the header
	formatV1   = 1
)

var chunkMagic = [8]byte{'R', 'P', 'C', 'H', 'U', 'N', 'K', 0}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// zeroCRC is the CRC of an all-zero block, the content of a block never written.
var zeroCRC = crc32.Checksum(make([]byte, BlockSize), castagnoli)

// blockPool holds BlockSize buffers for the partial blocks of writes.
var blockPool = sync.Pool{New: func() any { b := make([]byte, BlockSize); return &b }}

var (
	// ErrCorrupt is returned when a block's data does not match its CRC.
	ErrCorrupt = errors.New("chunkserver: block checksum mismatch")
	// ErrBadHeader is returned for a chunk file whose header is not valid.
	ErrBadHeader = errors.New("chunkserver: bad chunk header")
	// ErrRange is returned for an access outside a chunk.
	ErrRange = errors.New("chunkserver: access outside the chunk")
)

// Header is the fixed part of a chunk file header.
type Header struct {
	ID      uint64
	Version uint32
}

// EncodeHeader returns a full header block for h with every block's CRC set to
// that of a zero block.
func EncodeHeader(h Header) []byte {
	b := make([]byte, HeaderSize)
	copy(b, chunkMagic[:])
	binary.BigEndian.PutUint32(b[8:], formatV1)
	binary.BigEndian.PutUint64(b[12:], h.ID)
	binary.BigEndian.PutUint32(b[20:], h.Version)
	binary.BigEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	for i := 0; i < NumBlocks; i++ {
		binary.BigEndian.PutUint32(b[crcOffset+4*i:], zeroCRC)
	}
	return b
}

// DecodeHeader parses a header block and returns the header and CRC table.
func DecodeHeader(b []byte) (Header, []uint32, error) {
	if len(b) < HeaderSize {
		return Header{}, nil, fmt.Errorf("header of %d bytes: %w", len(b), ErrBadHeader)
	}
	if !bytes.Equal(b[:8], chunkMagic[:]) {
		return Header{}, nil, fmt.Errorf("magic %q: %w", b[:8], ErrBadHeader)
	}
	if v := binary.BigEndian.Uint32(b[8:]); v != formatV1 {
		return Header{}, nil, fmt.Errorf("format version %d: %w", v, ErrBadHeader)
	}
	if got, want := binary.BigEndian.Uint32(b[24:]), crc32.Checksum(b[:24], castagnoli); got != want {
		return Header{}, nil, fmt.Errorf("header crc %08x, want %08x: %w", got, want, ErrBadHeader)
	}
	h := Header{ID: binary.BigEndian.Uint64(b[12:]), Version: binary.BigEndian.Uint32(b[20:])}
	crcs := make([]uint32, NumBlocks)
	for i := range crcs {
		crcs[i] = binary.BigEndian.Uint32(b[crcOffset+4*i:])
	}
	return h, crcs, nil
}

// BlockError is a block whose data does not match its CRC; it matches
// ErrCorrupt with errors.Is.
type BlockError struct {
	ID      uint64
	Version uint32
	Block   int
	Got     uint32
	Want    uint32
}

func (e *BlockError) Error() string {
	return fmt.Sprintf("chunk %016x v%d block %d crc %08x, want %08x: %s", e.ID, e.Version, e.Block, e.Got, e.Want, ErrCorrupt)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *BlockError) Unwrap() error { return ErrCorrupt }

// chunk is one open chunk file.
type chunk struct {
	mu   sync.Mutex
	path string
	hdr  Header // changed (setVersion) with mu held
	// ver is hdr.Version for checks made without mu (the store's, under
	// its own lock), kept by setVersion.
	ver  atomic.Uint32
	crcs []uint32
	size int64 // file size, header included
	// fileState holds the open file (f) while the chunk is in use or
	// among the recently used ones; see files.go.
	fileState
	// grow, if set, is asked before the file grows by delta bytes and
	// refuses with ENOSPC past the store's capacity.
	grow func(delta int64) error
	// wgen counts the changes to the file (under mu); named is false while
	// the file's name (creation, version rename) may not be on disk. See
	// sync.go.
	wgen  uint64
	named bool
	// syncMu serialises fdatasyncs; sgen is the wgen the last one covered.
	syncMu sync.Mutex
	sgen   uint64
}

func createChunk(files *openFiles, path string, h Header) (*chunk, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create chunk %016x v%d: %w", h.ID, h.Version, err)
	}
	b := EncodeHeader(h)
	if _, err := f.WriteAt(b, 0); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create chunk %016x v%d header: %w", h.ID, h.Version, err)
	}
	_, crcs, _ := DecodeHeader(b)
	c := &chunk{path: path, hdr: h, crcs: crcs, size: HeaderSize, wgen: 1}
	c.ver.Store(h.Version)
	c.files = files
	c.install(f)
	return c, nil
}

// openChunk reads the header of the chunk file at path; the file is closed
// again (opened on use, see files.go).
func openChunk(files *openFiles, path string) (*chunk, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open chunk %s: %w", path, err)
	}
	b := make([]byte, HeaderSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("read chunk header %s: %w", path, err)
	}
	h, crcs, err := DecodeHeader(b)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("chunk %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("chunk %s: %w", path, err)
	}
	f.Close()
	// Whether the previous process's writes reached the disk is unknown:
	// the first sync flushes them.
	c := &chunk{path: path, hdr: h, crcs: crcs, size: fi.Size(), wgen: 1}
	c.ver.Store(h.Version)
	c.files, c.dfd = files, -1
	return c, nil
}

// readBlock reads block i (zero-filled past the end of the file) into b.
func (c *chunk) readBlock(i int, b []byte) error {
	n, err := c.f.ReadAt(b, HeaderSize+int64(i)*BlockSize)
	if err != nil && n < len(b) {
		clear(b[n:])
	}
	if got := crc32.Checksum(b, castagnoli); got != c.crcs[i] {
		return &BlockError{ID: c.hdr.ID, Version: c.hdr.Version, Block: i, Got: got, Want: c.crcs[i]}
	}
	return nil
}

// verifyBlock checks block i against its CRC (the scrub), using b (BlockSize
// bytes) as the buffer.
func (c *chunk) verifyBlock(i int, b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.acquire(); err != nil {
		return err
	}
	defer c.release()
	return c.readBlock(i, b)
}

// blocks returns the number of blocks holding data.
func (c *chunk) blocks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int((c.size - HeaderSize + BlockSize - 1) / BlockSize)
}

// reserve makes sure the file has room for [start, end) of data before any
// of it is written, so that a full disk fails the write with ENOSPC before
// it touches the chunk instead of leaving a block without its CRC.
func (c *chunk) reserve(start, end int64) error {
	if grow := HeaderSize + end - c.size; grow > 0 && c.grow != nil {
		if err := c.grow(grow); err != nil {
			return err
		}
	}
	err := unix.Fallocate(int(c.f.Fd()), 0, HeaderSize+start, end-start)
	if err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		if c.grow != nil && HeaderSize+end > c.size {
			_ = c.grow(-(HeaderSize + end - c.size))
		}
		return fmt.Errorf("chunk %016x reserve %d@%d: %w", c.hdr.ID, end-start, start, err)
	}
	c.size = max(c.size, HeaderSize+end)
	return nil
}

// ReadAt reads len(p) bytes at off, verifying every block it touches. The
// blocks are read in one transfer (direct if large, see direct.go).
func (c *chunk) ReadAt(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > ChunkSize {
		return fmt.Errorf("chunk %016x read %d@%d: %w", c.hdr.ID, len(p), off, ErrRange)
	}
	if len(p) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.acquire(); err != nil {
		return err
	}
	defer c.release()
	first := int(off / BlockSize)
	last := int((off + int64(len(p)) - 1) / BlockSize)
	start := int64(first) * BlockSize
	var buf []byte
	if off == start && len(p)%BlockSize == 0 && isAligned(p) {
		buf = p // whole blocks into an aligned buffer: no copy
	} else {
		var put func()
		buf, put = getBuf((last - first + 1) * BlockSize)
		defer put()
	}
	n, err := c.readRange(buf, HeaderSize+start)
	if err != nil {
		return fmt.Errorf("chunk %016x read %d@%d: %w", c.hdr.ID, len(buf), start, err)
	}
	clear(buf[n:]) // past the end of the file: never written, zeros
	for i := first; i <= last; i++ {
		b := buf[(i-first)*BlockSize : (i-first+1)*BlockSize]
		if got := crc32.Checksum(b, castagnoli); got != c.crcs[i] {
			return &BlockError{ID: c.hdr.ID, Version: c.hdr.Version, Block: i, Got: got, Want: c.crcs[i]}
		}
	}
	copy(p, buf[off-start:])
	return nil
}

// readRange reads b (aligned) at file offset at, short only at the end of the
// file. Called with c.mu held.
func (c *chunk) readRange(b []byte, at int64) (int, error) {
	if aligned(at, len(b)) {
		if fd := c.direct(); fd >= 0 {
			n, err := preadFull(fd, b, at)
			if err == nil || !c.noDirect(err) {
				return n, err
			}
		}
	}
	n, err := c.f.ReadAt(b, at)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// WriteAt writes p at off: partial blocks are read, verified and merged for
// their new CRCs, then the data and the new CRCs are written.
func (c *chunk) WriteAt(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > ChunkSize {
		return fmt.Errorf("chunk %016x write %d@%d: %w", c.hdr.ID, len(p), off, ErrRange)
	}
	if len(p) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.acquire(); err != nil {
		return err
	}
	defer c.release()
	first := int(off / BlockSize)
	last := int((off + int64(len(p)) - 1) / BlockSize)
	end := off + int64(len(p))
	var tab [4 * NumBlocks]byte
	crcs := make([]uint32, last-first+1)
	var blk []byte
	for i := first; i <= last; i++ {
		bs, be := int64(i)*BlockSize, int64(i+1)*BlockSize
		if bs >= off && be <= end {
			crcs[i-first] = crc32.Checksum(p[bs-off:be-off], castagnoli)
			continue
		}
		// A block the write covers in part: merge with what it holds.
		if blk == nil {
			bp := blockPool.Get().(*[]byte)
			defer blockPool.Put(bp)
			blk = *bp
		}
		if bs >= c.size-HeaderSize && c.crcs[i] == zeroCRC {
			clear(blk) // past the end of the file: zeros, nothing to read
		} else if err := c.readBlock(i, blk); err != nil {
			return err
		}
		lo, hi := max(bs, off), min(be, end)
		copy(blk[lo-bs:hi-bs], p[lo-off:hi-off])
		crcs[i-first] = crc32.Checksum(blk, castagnoli)
	}
	if err := c.reserve(int64(first)*BlockSize, end); err != nil {
		return err
	}
	// Write only the new bytes: the rest of the blocks is on disk already
	// (or reads as zeros past the end of the file).
	if err := c.writeRange(p, HeaderSize+off); err != nil {
		return fmt.Errorf("chunk %016x write %d@%d: %w", c.hdr.ID, len(p), off, err)
	}
	for i := first; i <= last; i++ {
		c.crcs[i] = crcs[i-first]
		binary.BigEndian.PutUint32(tab[4*(i-first):], c.crcs[i])
	}
	if _, err := c.f.WriteAt(tab[:4*(last-first+1)], crcOffset+4*int64(first)); err != nil {
		return fmt.Errorf("chunk %016x crc table: %w", c.hdr.ID, err)
	}
	c.wgen++
	return nil
}

// writeRange writes p at file offset at, direct if large and aligned: from
// p itself if it starts at an aligned address (a ChunkWrite read by
// writeBuffer), else through an aligned copy. Called with c.mu held.
func (c *chunk) writeRange(p []byte, at int64) error {
	if aligned(at, len(p)) && (isAligned(p) || len(p) <= bufSize) {
		if fd := c.direct(); fd >= 0 {
			var err error
			if isAligned(p) {
				err = pwriteFull(fd, p, at)
			} else {
				buf, put := getBuf(len(p))
				copy(buf, p)
				err = pwriteFull(fd, buf, at)
				put()
			}
			if err == nil || !c.noDirect(err) {
				return err
			}
		}
	}
	_, err := c.f.WriteAt(p, at)
	return err
}

// version returns the chunk's version; any lock or none may be held.
func (c *chunk) version() uint32 { return c.ver.Load() }

// setVersion rewrites the header for a new version and renames the file.
func (c *chunk) setVersion(v uint32, path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.acquire(); err != nil {
		return err
	}
	defer c.release()
	h := c.hdr
	h.Version = v
	b := EncodeHeader(h)
	if _, err := c.f.WriteAt(b[:crcOffset], 0); err != nil {
		return fmt.Errorf("chunk %016x set version %d: %w", c.hdr.ID, v, err)
	}
	if err := os.Rename(c.path, path); err != nil {
		return fmt.Errorf("chunk %016x set version %d: %w", c.hdr.ID, v, err)
	}
	c.hdr, c.path = h, path
	c.ver.Store(v)
	c.wgen++
	c.named = false
	return nil
}

// Length returns the number of data bytes in the chunk file.
func (c *chunk) Length() (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := c.acquire()
	if err != nil {
		return 0, err
	}
	defer c.release()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("chunk %016x: %w", c.hdr.ID, err)
	}
	return max(0, fi.Size()-HeaderSize), nil
}
