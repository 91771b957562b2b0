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
	"os"
	"sync"

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
	f    *os.File
	hdr  Header
	crcs []uint32
	size int64 // file size, header included
	// grow, if set, is asked before the file grows by delta bytes and
	// refuses with ENOSPC past the store's capacity.
	grow func(delta int64) error
}

func createChunk(path string, h Header) (*chunk, error) {
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
	return &chunk{path: path, f: f, hdr: h, crcs: crcs, size: HeaderSize}, nil
}

func openChunk(path string) (*chunk, error) {
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
	return &chunk{path: path, f: f, hdr: h, crcs: crcs, size: fi.Size()}, nil
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

// ReadAt reads len(p) bytes at off, verifying every block it touches.
func (c *chunk) ReadAt(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > ChunkSize {
		return fmt.Errorf("chunk %016x read %d@%d: %w", c.hdr.ID, len(p), off, ErrRange)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	blk := make([]byte, BlockSize)
	for len(p) > 0 {
		i := int(off / BlockSize)
		in := int(off % BlockSize)
		if err := c.readBlock(i, blk); err != nil {
			return err
		}
		n := copy(p, blk[in:])
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// WriteAt writes p at off: partial blocks are read, verified and merged, then
// the data and the new CRCs are written.
func (c *chunk) WriteAt(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > ChunkSize {
		return fmt.Errorf("chunk %016x write %d@%d: %w", c.hdr.ID, len(p), off, ErrRange)
	}
	if len(p) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	first := int(off / BlockSize)
	last := int((off + int64(len(p)) - 1) / BlockSize)
	start := int64(first) * BlockSize
	buf := make([]byte, (last-first+1)*BlockSize)
	if off != start {
		if err := c.readBlock(first, buf[:BlockSize]); err != nil {
			return err
		}
	}
	end := off + int64(len(p))
	if end%BlockSize != 0 && (last != first || off == start) {
		if err := c.readBlock(last, buf[len(buf)-BlockSize:]); err != nil {
			return err
		}
	}
	copy(buf[off-start:], p)
	if err := c.reserve(start, end); err != nil {
		return err
	}
	// Write only the new bytes: the rest of the blocks is on disk already
	// (or reads as zeros past the end of the file); buf only serves the CRCs.
	if _, err := c.f.WriteAt(p, HeaderSize+off); err != nil {
		return fmt.Errorf("chunk %016x write %d@%d: %w", c.hdr.ID, len(p), off, err)
	}
	var tab [4 * NumBlocks]byte
	for i := first; i <= last; i++ {
		c.crcs[i] = crc32.Checksum(buf[(i-first)*BlockSize:(i-first+1)*BlockSize], castagnoli)
		binary.BigEndian.PutUint32(tab[4*(i-first):], c.crcs[i])
	}
	if _, err := c.f.WriteAt(tab[:4*(last-first+1)], crcOffset+4*int64(first)); err != nil {
		return fmt.Errorf("chunk %016x crc table: %w", c.hdr.ID, err)
	}
	return nil
}

// setVersion rewrites the header for a new version and renames the file.
func (c *chunk) setVersion(v uint32, path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
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
	return nil
}

// Length returns the number of data bytes in the chunk file.
func (c *chunk) Length() (int64, error) {
	fi, err := c.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("chunk %016x: %w", c.hdr.ID, err)
	}
	return max(0, fi.Size()-HeaderSize), nil
}

func (c *chunk) Close() error { return c.f.Close() }
