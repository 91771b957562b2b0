package proto

import (
	"fmt"
	"syscall"
)

// Namespace types shared by the master and its clients.

// RootIno is the inode number of the root directory.
const RootIno = 1

// DefaultGoal is the number of copies kept of a file's chunks unless set.
const DefaultGoal = 2

// Attr is an inode's attributes. Mode holds the file type bits (S_IFMT) and
// the permission bits, as in stat(2). Times are nanoseconds since the epoch.
type Attr struct {
	Ino    uint64
	Mode   uint32
	Uid    uint32
	Gid    uint32
	Nlink  uint32
	Rdev   uint32
	Goal   uint8
	Size   uint64
	Atime  int64
	Mtime  int64
	Ctime  int64
	Target string // symlink target
}

// IsDir reports whether the inode is a directory.
func (a *Attr) IsDir() bool { return a.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// IsRegular reports whether the inode is a regular file.
func (a *Attr) IsRegular() bool { return a.Mode&syscall.S_IFMT == syscall.S_IFREG }

const attrVersion = 1

// Encode appends a to e (also the record stored in the database).
func (a *Attr) Encode(e *Enc) {
	e.U8(attrVersion)
	e.U64(a.Ino)
	e.U32(a.Mode)
	e.U32(a.Uid)
	e.U32(a.Gid)
	e.U32(a.Nlink)
	e.U32(a.Rdev)
	e.U8(a.Goal)
	e.U64(a.Size)
	e.I64(a.Atime)
	e.I64(a.Mtime)
	e.I64(a.Ctime)
	e.String(a.Target)
}

// Decode reads a from b.
func (a *Attr) Decode(b []byte) error {
	d := NewDec(b)
	if v := d.U8(); d.Err() == nil && v != attrVersion {
		return fmt.Errorf("decode inode attributes: record version %d: %w", v, ErrVersion)
	}
	a.Ino = d.U64()
	a.Mode, a.Uid, a.Gid, a.Nlink, a.Rdev = d.U32(), d.U32(), d.U32(), d.U32(), d.U32()
	a.Goal = d.U8()
	a.Size = d.U64()
	a.Atime, a.Mtime, a.Ctime = d.I64(), d.I64(), d.I64()
	a.Target = d.String()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode inode attributes: %w", err)
	}
	return nil
}

// ChunkSize is the span of a file covered by one chunk.
const ChunkSize = 64 << 20

// Node describes an inode to create.
type Node struct {
	Mode   uint32 // type and permission bits
	Uid    uint32
	Gid    uint32
	Rdev   uint32
	Target string // for symlinks
}

// Dirent is one directory entry.
type Dirent struct {
	Name string
	Ino  uint64
}

// Setattr valid bits.
const (
	SetMode = 1 << iota
	SetUid
	SetGid
	SetSize
	SetAtime
	SetMtime
	// SetGoal sets the goal from the low byte of the mode field.
	SetGoal
)

// Rename flags, the values of Linux's renameat2.
const (
	RenameNoReplace = 1 // RENAME_NOREPLACE: fail with EEXIST if the target exists
	RenameExchange  = 2 // RENAME_EXCHANGE: swap the two entries atomically
)

// Setxattr flags, the values of Linux's setxattr.
const (
	XattrCreate  = 1 // XATTR_CREATE: fail with EEXIST if the attribute exists
	XattrReplace = 2 // XATTR_REPLACE: fail with ENODATA if it does not
)

// Info is the cluster summary the Info message returns as JSON.
type Info struct {
	Servers []ServerInfo `json:"servers"`
	Space   struct {
		Total uint64 `json:"total"`
		Free  uint64 `json:"free"`
	} `json:"space"`
	Chunks ChunkCounts `json:"chunks"`
}

// ServerInfo describes one chunkserver.
type ServerInfo struct {
	Addr  string `json:"addr"`
	Live  bool   `json:"live"`
	Total uint64 `json:"total"`
	Free  uint64 `json:"free"`
}

// ChunkCounts counts chunks by replication state.
type ChunkCounts struct {
	Total     int `json:"total"`
	OK        int `json:"ok"`
	Undergoal int `json:"undergoal"`
	Overgoal  int `json:"overgoal"`
	Missing   int `json:"missing"`
	Copies    int `json:"copies"`
	// States counts the copies the master knows of by state.
	States CopyStates `json:"copy_states"`
}

// CopyStates counts chunk copies by state: valid (current version on a live
// chunkserver), lost (on a chunkserver that stopped answering), stale (an
// older version or a deleted file's chunk, queued for deletion) and bad
// (failed a CRC check in the last minute and dropped).
type CopyStates struct {
	Valid int `json:"valid"`
	Lost  int `json:"lost"`
	Stale int `json:"stale"`
	Bad   int `json:"bad"`
}
