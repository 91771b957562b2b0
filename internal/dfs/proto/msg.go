package proto

import (
	"errors"
	"fmt"
	"syscall"
)

// MsgType names a message. Requests and their replies share a type; the reply
// flag tells them apart.
type MsgType uint16

// Message types. Numbers are part of the protocol: never renumber.
const (
	// Chunkserver data path (client or upstream chunkserver -> chunkserver).
	MsgChunkWrite      MsgType = 0x0101 // ChunkWrite -> empty
	MsgChunkRead       MsgType = 0x0102 // ChunkRead -> data bytes
	MsgChunkCreate     MsgType = 0x0103 // ChunkCreate -> empty
	MsgChunkDelete     MsgType = 0x0104 // ChunkRef -> empty
	MsgChunkInfo       MsgType = 0x0105 // ChunkRef -> length u64
	MsgChunkReplicate  MsgType = 0x0106 // ChunkRef, source str -> empty
	MsgChunkSetVersion MsgType = 0x0107 // ChunkRef, new version u32 -> empty
	// Master, chunkserver side.
	MsgRegister  MsgType = 0x0201 // Register -> ChunkList (stale copies to delete)
	MsgHeartbeat MsgType = 0x0202 // Register (no chunks) -> ChunkList (stale copies to delete)
	MsgBadChunk  MsgType = 0x0203 // BadChunk -> empty: a copy failed its CRC check
	// Master, client side.
	MsgLookup       MsgType = 0x0301
	MsgGetattr      MsgType = 0x0302
	MsgCreate       MsgType = 0x0303
	MsgReaddir      MsgType = 0x0304
	MsgWriteChunk   MsgType = 0x0305
	MsgReadChunk    MsgType = 0x0306
	MsgWriteEnd     MsgType = 0x0307
	MsgUnlink       MsgType = 0x0308
	MsgInfo         MsgType = 0x0309
	MsgSetattr      MsgType = 0x030a
	MsgRename       MsgType = 0x030b
	MsgLink         MsgType = 0x030c
	MsgRecoverChunk MsgType = 0x030d
	// MsgSessionOp wraps a namespace change in a client session's request
	// id so that a retry after a lost reply or a master restart is applied
	// once (SessionOp -> the inner message's reply).
	MsgSessionOp MsgType = 0x0380
)

var typeNames = map[MsgType]string{
	MsgChunkWrite: "ChunkWrite", MsgChunkRead: "ChunkRead", MsgChunkCreate: "ChunkCreate",
	MsgChunkDelete: "ChunkDelete", MsgChunkInfo: "ChunkInfo", MsgChunkReplicate: "ChunkReplicate", MsgChunkSetVersion: "ChunkSetVersion",
	MsgRegister: "Register", MsgHeartbeat: "Heartbeat", MsgBadChunk: "BadChunk", MsgSessionOp: "SessionOp",
	MsgLookup: "Lookup", MsgGetattr: "Getattr", MsgCreate: "Create", MsgReaddir: "Readdir",
	MsgWriteChunk: "WriteChunk", MsgReadChunk: "ReadChunk", MsgWriteEnd: "WriteEnd",
	MsgUnlink: "Unlink", MsgInfo: "Info", MsgSetattr: "Setattr", MsgRename: "Rename", MsgLink: "Link", MsgRecoverChunk: "RecoverChunk",
}

func (t MsgType) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("MsgType(0x%04x)", uint16(t))
}

// Addr is a chunkserver address in a replication chain.
type Addr = string

// ChunkWrite writes Data at Offset of chunk ID version Version, then forwards
// the same write to Chain[0] with Chain[1:], and replies when all hold it.
type ChunkWrite struct {
	ID      uint64
	Version uint32
	Offset  uint32
	Chain   []Addr
	Data    []byte
}

// MaxChain bounds a replication chain.
const MaxChain = 16

// Encode appends m to e.
func (m *ChunkWrite) Encode(e *Enc) {
	m.EncodeHead(e)
	e.B = append(e.B, m.Data...)
}

// Decode reads m from b; Data aliases b.
func (m *ChunkWrite) Decode(b []byte) error {
	d := NewDec(b)
	m.ID = d.U64()
	m.Version = d.U32()
	m.Offset = d.U32()
	n := int(d.U8())
	if n > MaxChain {
		return fmt.Errorf("chain of %d chunkservers, at most %d: %w", n, MaxChain, ErrTooLarge)
	}
	m.Chain = nil
	for i := 0; i < n && d.Err() == nil; i++ {
		m.Chain = append(m.Chain, d.String())
	}
	m.Data = d.Bytes()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode ChunkWrite: %w", err)
	}
	return nil
}

// ChunkWriteDataOffset returns where Data starts in an encoded ChunkWrite
// of which head holds the first bytes, or false if head ends before Data's
// length field or is not a ChunkWrite's start. A chunkserver uses it to
// place the payload so that Data lands on an aligned address.
func ChunkWriteDataOffset(head []byte) (int, bool) {
	d := NewDec(head)
	d.U64()
	d.U32()
	d.U32()
	n := int(d.U8())
	if n > MaxChain {
		return 0, false
	}
	for i := 0; i < n && d.Err() == nil; i++ {
		l := d.U32()
		if l > uint32(len(d.B)) {
			return 0, false
		}
		d.B = d.B[l:]
	}
	d.U32()
	if d.Err() != nil {
		return 0, false
	}
	return len(head) - len(d.B), true
}

// ChunkRead asks for Length bytes at Offset of chunk ID version Version.
type ChunkRead struct {
	ID      uint64
	Version uint32
	Offset  uint32
	Length  uint32
}

// Encode appends m to e.
func (m *ChunkRead) Encode(e *Enc) {
	e.U64(m.ID)
	e.U32(m.Version)
	e.U32(m.Offset)
	e.U32(m.Length)
}

// Decode reads m from b.
func (m *ChunkRead) Decode(b []byte) error {
	d := NewDec(b)
	m.ID, m.Version, m.Offset, m.Length = d.U64(), d.U32(), d.U32(), d.U32()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode ChunkRead: %w", err)
	}
	return nil
}

// ChunkRef names one version of a chunk; ChunkCreate and ChunkDelete use it.
type ChunkRef struct {
	ID      uint64
	Version uint32
}

// Encode appends m to e.
func (m *ChunkRef) Encode(e *Enc) { e.U64(m.ID); e.U32(m.Version) }

// Decode reads m from b.
func (m *ChunkRef) Decode(b []byte) error {
	d := NewDec(b)
	m.ID, m.Version = d.U64(), d.U32()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode ChunkRef: %w", err)
	}
	return nil
}

// ErrorReply is the payload of a frame with FlagError: an errno, so that a
// client can hand it to the kernel unchanged, and a message for humans.
type ErrorReply struct {
	Errno   syscall.Errno
	Message string
}

func (e *ErrorReply) Error() string {
	return fmt.Sprintf("remote: %s (%s)", e.Message, e.Errno)
}

// Unwrap lets errors.Is(err, syscall.ENOSPC) see the errno.
func (e *ErrorReply) Unwrap() error { return e.Errno }

// Encode appends m to e.
func (e *ErrorReply) Encode(enc *Enc) { enc.U32(uint32(e.Errno)); enc.String(e.Message) }

// Decode reads m from b.
func (e *ErrorReply) Decode(b []byte) error {
	d := NewDec(b)
	e.Errno = syscall.Errno(d.U32())
	e.Message = d.String()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode ErrorReply: %w", err)
	}
	return nil
}

// NewErrorReply turns err into an ErrorReply, keeping an errno found in its chain
// and using EIO otherwise.
func NewErrorReply(err error) *ErrorReply {
	var en syscall.Errno
	if !errors.As(err, &en) {
		en = syscall.EIO
	}
	return &ErrorReply{Errno: en, Message: err.Error()}
}

// ChunkLoc is a chunk's id, version and the chunkservers holding it, as the
// master hands it to a client for reading or writing.
type ChunkLoc struct {
	ID      uint64
	Version uint32
	Servers []Addr
}

// Encode appends m to e.
func (m *ChunkLoc) Encode(e *Enc) {
	e.U64(m.ID)
	e.U32(m.Version)
	e.U8(uint8(len(m.Servers)))
	for _, a := range m.Servers {
		e.String(a)
	}
}

// Decode reads m from b.
func (m *ChunkLoc) Decode(b []byte) error {
	d := NewDec(b)
	m.ID, m.Version = d.U64(), d.U32()
	n := int(d.U8())
	if n > MaxChain {
		return fmt.Errorf("decode ChunkLoc: %d servers: %w", n, ErrTooLarge)
	}
	m.Servers = nil
	for i := 0; i < n && d.Err() == nil; i++ {
		m.Servers = append(m.Servers, d.String())
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode ChunkLoc: %w", err)
	}
	return nil
}

// Register is sent by a chunkserver to the master when it connects, and again
// as a heartbeat (MsgHeartbeat, Chunks empty) every few seconds.
type Register struct {
	Addr   Addr // where clients reach the chunkserver
	Total  uint64
	Free   uint64
	Chunks []ChunkRef
}

// MaxReportChunks bounds one chunk report.
const MaxReportChunks = 1 << 20

// Encode appends m to e.
func (m *Register) Encode(e *Enc) {
	e.String(m.Addr)
	e.U64(m.Total)
	e.U64(m.Free)
	e.U32(uint32(len(m.Chunks)))
	for _, c := range m.Chunks {
		c.Encode(e)
	}
}

// Decode reads m from b.
func (m *Register) Decode(b []byte) error {
	d := NewDec(b)
	m.Addr = d.String()
	m.Total, m.Free = d.U64(), d.U64()
	n := d.U32()
	if n > MaxReportChunks || int(n)*12 > len(d.B) {
		return fmt.Errorf("decode Register: %d chunks in %d bytes: %w", n, len(d.B), ErrShort)
	}
	m.Chunks = make([]ChunkRef, n)
	for i := range m.Chunks {
		m.Chunks[i] = ChunkRef{ID: d.U64(), Version: d.U32()}
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode Register: %w", err)
	}
	return nil
}

// ChunkList is a list of chunk versions; the master's reply to Register and
// Heartbeat lists the copies the chunkserver must delete (stale versions and
// chunks no file uses). A copy is deleted only if its version is at most the
// listed one, so a newer copy is never lost to a late message.
type ChunkList struct {
	Chunks []ChunkRef
}

// Encode appends m to e.
func (m *ChunkList) Encode(e *Enc) {
	e.U32(uint32(len(m.Chunks)))
	for _, c := range m.Chunks {
		c.Encode(e)
	}
}

// Decode reads m from b; an empty payload is an empty list.
func (m *ChunkList) Decode(b []byte) error {
	m.Chunks = nil
	if len(b) == 0 {
		return nil
	}
	d := NewDec(b)
	n := d.U32()
	if n > MaxReportChunks || int(n)*12 > len(d.B) {
		return fmt.Errorf("decode ChunkList: %d chunks in %d bytes: %w", n, len(d.B), ErrShort)
	}
	m.Chunks = make([]ChunkRef, n)
	for i := range m.Chunks {
		m.Chunks[i] = ChunkRef{ID: d.U64(), Version: d.U32()}
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode ChunkList: %w", err)
	}
	return nil
}

// BadChunk reports a copy whose block Block failed its CRC (on a read or
// the scrub): the master drops the copy and replicates the chunk from a
// good one.
type BadChunk struct {
	Addr    Addr // the reporting chunkserver
	ID      uint64
	Version uint32
	Block   uint32
}

// Encode appends m to e.
func (m *BadChunk) Encode(e *Enc) {
	e.String(m.Addr)
	e.U64(m.ID)
	e.U32(m.Version)
	e.U32(m.Block)
}

// Decode reads m from b.
func (m *BadChunk) Decode(b []byte) error {
	d := NewDec(b)
	m.Addr = d.String()
	m.ID, m.Version, m.Block = d.U64(), d.U32(), d.U32()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode BadChunk: %w", err)
	}
	return nil
}

// SessionOp carries a namespace change (Type, Payload) under a client
// session's request id. A client keeps Session for its lifetime and numbers
// its requests with Seq; a retry repeats both, and the master answers a
// request it already applied with success instead of applying it twice.
type SessionOp struct {
	Session uint64
	Seq     uint64
	Type    MsgType
	Payload []byte
}

// Encode appends m to e.
func (m *SessionOp) Encode(e *Enc) {
	e.U64(m.Session)
	e.U64(m.Seq)
	e.U32(uint32(m.Type))
	e.Bytes(m.Payload)
}

// Decode reads m from b; Payload aliases b.
func (m *SessionOp) Decode(b []byte) error {
	d := NewDec(b)
	m.Session, m.Seq = d.U64(), d.U64()
	t := d.U32()
	m.Payload = d.Bytes()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode SessionOp: %w", err)
	}
	if t > 0xffff || MsgType(t) == MsgSessionOp {
		return fmt.Errorf("decode SessionOp: inner type %#x: %w", t, ErrTooLarge)
	}
	m.Type = MsgType(t)
	return nil
}
