package proto

import (
	"errors"
	"fmt"
)

// Client -> master messages of the POSIX surface: open handles (so that an
// unlinked file stays readable while open), extended attributes, statfs and
// file locks. They take the 0x034x range so that the core client messages
// (0x030x-0x033x) can grow without a clash. See docs/protocols/dfs.md.
const (
	MsgOpen        MsgType = 0x0340 // ino u64, flags u32 -> Attr
	MsgRelease     MsgType = 0x0341 // n u32, n × ino u64 -> empty
	MsgCreateOpen  MsgType = 0x0342 // as Create -> Attr (the new file counts one open handle)
	MsgGetxattr    MsgType = 0x0343 // ino u64, name str -> value bytes
	MsgSetxattr    MsgType = 0x0344 // ino u64, name str, value bytes, flags u32 -> empty
	MsgListxattr   MsgType = 0x0345 // ino u64 -> n u32, n × name str
	MsgRemovexattr MsgType = 0x0346 // ino u64, name str -> empty
	MsgStatfs      MsgType = 0x0347 // empty -> Statfs
	MsgGetlk       MsgType = 0x0348 // Lock -> Lock (type F_UNLCK when nothing conflicts)
	MsgSetlk       MsgType = 0x0349 // Lock, wait u8 -> empty (EAGAIN while a conflicting lock is held)
)

func init() {
	for t, n := range map[MsgType]string{
		MsgOpen: "Open", MsgRelease: "Release", MsgCreateOpen: "CreateOpen",
		MsgGetxattr: "Getxattr", MsgSetxattr: "Setxattr", MsgListxattr: "Listxattr", MsgRemovexattr: "Removexattr",
		MsgStatfs: "Statfs", MsgGetlk: "Getlk", MsgSetlk: "Setlk",
	} {
		typeNames[t] = n
	}
}

// Open flags.
const (
	// OpenTrunc truncates the file to zero in the same step (O_TRUNC).
	OpenTrunc = 1 << 0
	// OpenLoc asks for the location of the file's chunk 0 in the reply,
	// which is then Bytes(Attr) Bytes(ChunkLoc or empty) instead of Attr.
	OpenLoc = 1 << 1
)

// MaxRelease bounds the inodes of one Release message.
const MaxRelease = 4096

// Statfs is the file system's space and inode summary, from the live
// chunkservers' reported capacity and the master's inode count.
type Statfs struct {
	Total  uint64 // bytes on live chunkservers
	Free   uint64 // bytes free on live chunkservers
	Inodes uint64 // inodes in use
	Goal   uint8  // the root directory's goal, to turn raw space into file space
}

// Encode appends m to e.
func (m *Statfs) Encode(e *Enc) { e.U64(m.Total); e.U64(m.Free); e.U64(m.Inodes); e.U8(m.Goal) }

// Decode reads m from b.
func (m *Statfs) Decode(b []byte) error {
	d := NewDec(b)
	m.Total, m.Free, m.Inodes, m.Goal = d.U64(), d.U64(), d.U64(), d.U8()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode Statfs: %w", err)
	}
	return nil
}

// Lock types, the values of Linux's F_RDLCK, F_WRLCK and F_UNLCK.
const (
	LockRead   = 0
	LockWrite  = 1
	LockUnlock = 2
)

// Lock kinds: POSIX byte-range (fcntl) locks and whole-file flock locks are
// separate name spaces, as on Linux.
const (
	LockPOSIX = 0
	LockFlock = 1
)

// Lock is a file lock request or a conflicting lock. Owner identifies the
// lock owner within the client's session (the kernel's lock owner id); the
// master qualifies it with the session. Start and End are inclusive byte
// offsets (End = 1<<63-1 for "to the end of the file").
type Lock struct {
	Ino   uint64
	Owner uint64
	Start uint64
	End   uint64
	Type  uint32
	Pid   uint32
	Kind  uint8
}

// Overlaps reports whether the byte ranges of m and l meet.
func (m *Lock) Overlaps(l *Lock) bool { return m.Start <= l.End && l.Start <= m.End }

// Outside returns the parts of m's range outside l's (none, one or two locks
// like m): what is left of an owner's lock m when the same owner locks or
// unlocks l's range.
func (m *Lock) Outside(l *Lock) []Lock {
	if !m.Overlaps(l) {
		return []Lock{*m}
	}
	var out []Lock
	if m.Start < l.Start {
		left := *m
		left.End = l.Start - 1
		out = append(out, left)
	}
	if m.End > l.End {
		right := *m
		right.Start = l.End + 1
		out = append(out, right)
	}
	return out
}

// Encode appends m to e.
func (m *Lock) Encode(e *Enc) {
	e.U64(m.Ino)
	e.U64(m.Owner)
	e.U64(m.Start)
	e.U64(m.End)
	e.U32(m.Type)
	e.U32(m.Pid)
	e.U8(m.Kind)
}

// DecodeFrom reads m from d, checking its fields.
func (m *Lock) DecodeFrom(d *Dec) error {
	m.Ino, m.Owner, m.Start, m.End = d.U64(), d.U64(), d.U64(), d.U64()
	m.Type, m.Pid, m.Kind = d.U32(), d.U32(), d.U8()
	if d.Err() != nil {
		return fmt.Errorf("decode Lock: %w", d.Err())
	}
	if m.Type > LockUnlock || m.Kind > LockFlock || m.Start > m.End {
		return fmt.Errorf("decode Lock: type %d kind %d range %d-%d: %w", m.Type, m.Kind, m.Start, m.End, ErrBadField)
	}
	return nil
}

// Decode reads m from b.
func (m *Lock) Decode(b []byte) error {
	d := NewDec(b)
	if err := m.DecodeFrom(d); err != nil {
		return err
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode Lock: %w", err)
	}
	return nil
}

// ErrBadField is returned for a message field outside its allowed values.
var ErrBadField = errors.New("proto: field out of range")
