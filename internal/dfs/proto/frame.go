// Package proto is the wire format shared by every rampart DFS role: master,
// chunkservers and clients. Each TCP connection carries a stream of frames; a
// frame is a fixed 16-byte header followed by a bounded payload. The request id
// in the header lets many requests be in flight on one connection; a reply
// carries the id of its request. See docs/protocols/dfs.md.
package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the protocol version carried in every frame header.
const Version = 1

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 16

// MaxPayload bounds a frame's payload: one 64 KiB-aligned data block of up to
// 8 MiB plus room for the message fields around it.
const MaxPayload = 8<<20 + 4096

// magic opens every frame header so that a stray peer is detected at once.
const magic = 0xDF

// Flag bits in a frame header.
const (
	// FlagReply marks a frame answering the request with the same id.
	FlagReply = 1 << 0
	// FlagError marks a reply whose payload is an encoded error (see ErrorReply).
	FlagError = 1 << 1
)

var (
	// ErrBadMagic is returned when a frame header does not start with the magic byte.
	ErrBadMagic = errors.New("proto: bad frame magic")
	// ErrVersion is returned for a frame of an unsupported protocol version.
	ErrVersion = errors.New("proto: unsupported protocol version")
	// ErrTooLarge is returned for a frame whose payload exceeds MaxPayload.
	ErrTooLarge = errors.New("proto: frame too large")
	// ErrShort is returned when a message ends before all its fields were read.
	ErrShort = errors.New("proto: message truncated")
	// ErrTrailing is returned when a message has bytes left after its last field.
	ErrTrailing = errors.New("proto: trailing bytes in message")
)

// Header is a decoded frame header.
//
//	byte 0      magic 0xDF
//	byte 1      version
//	bytes 2-3   message type (big endian)
//	byte 4      flags
//	bytes 5-7   reserved, zero
//	bytes 8-11  payload length (big endian)
//	bytes 12-15 request id (big endian)
type Header struct {
	Type   MsgType
	Flags  uint8
	Length uint32
	ID     uint32
}

// Frame is one message: its header fields and its payload.
type Frame struct {
	Type    MsgType
	Flags   uint8
	ID      uint32
	Payload []byte
}

// IsReply reports whether the frame answers a request.
func (f *Frame) IsReply() bool { return f.Flags&FlagReply != 0 }

// IsError reports whether the frame is an error reply.
func (f *Frame) IsError() bool { return f.Flags&FlagError != 0 }

// PutHeader encodes h into b, which must hold HeaderSize bytes.
func PutHeader(b []byte, h Header) {
	_ = b[HeaderSize-1]
	b[0] = magic
	b[1] = Version
	binary.BigEndian.PutUint16(b[2:], uint16(h.Type))
	b[4] = h.Flags
	b[5], b[6], b[7] = 0, 0, 0
	binary.BigEndian.PutUint32(b[8:], h.Length)
	binary.BigEndian.PutUint32(b[12:], h.ID)
}

// ParseHeader decodes and validates a frame header.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("frame header of %d bytes: %w", len(b), ErrShort)
	}
	if b[0] != magic {
		return Header{}, fmt.Errorf("frame header byte 0x%02x: %w", b[0], ErrBadMagic)
	}
	if b[1] != Version {
		return Header{}, fmt.Errorf("frame version %d: %w", b[1], ErrVersion)
	}
	h := Header{
		Type:   MsgType(binary.BigEndian.Uint16(b[2:])),
		Flags:  b[4],
		Length: binary.BigEndian.Uint32(b[8:]),
		ID:     binary.BigEndian.Uint32(b[12:]),
	}
	if h.Length > MaxPayload {
		return Header{}, fmt.Errorf("frame %s of %d bytes: %w", h.Type, h.Length, ErrTooLarge)
	}
	return h, nil
}

// ReadFrame reads one frame from r. The payload is freshly allocated.
func ReadFrame(r io.Reader) (*Frame, error) {
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return nil, err
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return nil, err
	}
	f := &Frame{Type: h.Type, Flags: h.Flags, ID: h.ID, Payload: make([]byte, h.Length)}
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		return nil, fmt.Errorf("read %s payload of %d bytes: %w", h.Type, h.Length, err)
	}
	return f, nil
}

// WriteFrame writes f to w as one header and one payload write.
func WriteFrame(w io.Writer, f *Frame) error {
	return writeFrameParts(w, f, nil)
}

// writeFrameParts writes f with more appended to its payload.
func writeFrameParts(w io.Writer, f *Frame, more []byte) error {
	n := len(f.Payload) + len(more)
	if n > MaxPayload {
		return fmt.Errorf("write %s of %d bytes: %w", f.Type, n, ErrTooLarge)
	}
	var hb [HeaderSize]byte
	PutHeader(hb[:], Header{Type: f.Type, Flags: f.Flags, Length: uint32(n), ID: f.ID})
	if _, err := w.Write(hb[:]); err != nil {
		return fmt.Errorf("write %s header: %w", f.Type, err)
	}
	for _, part := range [][]byte{f.Payload, more} {
		if len(part) == 0 {
			continue
		}
		if _, err := w.Write(part); err != nil {
			return fmt.Errorf("write %s payload: %w", f.Type, err)
		}
	}
	return nil
}
