package raid

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
)

// Superblock layout constants (docs/formats/raid-superblock.md).
const (
	// SuperblockSize is the size of the superblock at offset 0 of every member.
	SuperblockSize = 4096
	// SuperblockVersion is the format version this package writes and reads;
	// arrays with PolicyCoW carry SuperblockVersionCoW instead, which builds that
	// do not know the stripe map refuse.
	SuperblockVersion    = 1
	SuperblockVersionCoW = 2
	// MaxMembers is the most raid devices an array may have.
	MaxMembers = 64
	// RoleSpare is the role of a member that holds no data yet.
	RoleSpare = 0xFFFFFFFF

	roleTableOff  = 168
	roleEntrySize = 24
	bitmapFields  = 4032 // BitmapOff, BitmapChunk, BitmapBytes
	cowFields     = 4056 // TagOff, SpareStripes
	// The member locations (Superblock.Locations) sit between the largest role
	// table (168 + 64*24 = 1704) and the bitmap fields.
	locationsOff = 1712
	locationsEnd = 4016
)

var superMagic = [8]byte{'R', 'M', 'P', 'T', 'R', 'A', 'I', 'D'}

// Sentinel errors of the package.
var (
	ErrNoSuperblock  = errors.New("raid: no rampart superblock")
	ErrBadSuperblock = errors.New("raid: corrupt superblock")
	ErrForeign       = errors.New("raid: member belongs to another array")
	ErrStale         = errors.New("raid: member is stale")
	ErrFailed        = errors.New("raid: array has failed (too many members lost)")
	ErrHasSuperblock = errors.New("raid: member already carries a superblock")
	ErrTolerance     = errors.New("raid: operation would take the array below its fault tolerance")
	ErrBadGeometry   = errors.New("raid: invalid array geometry")
	ErrNotMember     = errors.New("raid: no such member")
)

// RoleState is the state of one role in the role table.
type RoleState uint32

// Role states.
const (
	RoleMissing    RoleState = 0
	RoleActive     RoleState = 1
	RoleFaulty     RoleState = 2
	RoleRebuilding RoleState = 3
)

func (s RoleState) String() string {
	switch s {
	case RoleMissing:
		return "missing"
	case RoleActive:
		return "active"
	case RoleFaulty:
		return "faulty"
	case RoleRebuilding:
		return "rebuilding"
	}
	return fmt.Sprintf("state(%d)", uint32(s))
}

// Role flags.
const (
	// FlagWriteMostly marks a RAID-1/10 member that reads avoid.
	FlagWriteMostly uint32 = 1 << 0
	// FlagReAdd marks a member being re-added after a brief absence: it is in sync
	// except in the regions the write-intent bitmap marks dirty, which alone are
	// rebuilt.
	FlagReAdd uint32 = 1 << 1
)

// Superblock state bits.
const (
	stateClean uint32 = 1 << 0
)

// WriteHole policies for RAID-5/6.
const (
	// PolicyNone: no journal; after an unclean shutdown all parity is resynced.
	PolicyNone uint32 = 0
	// PolicyIntentJournal (withdrawn, no longer created): full-stripe writes logged
	// only their intent. It does not cover a member lost together with a crash, so
	// arrays that carry it are now journaled in full; replay still understands its
	// intent entries.
	PolicyIntentJournal uint32 = 1
	// PolicyJournal (the default): every stripe update, data and parity, is made
	// durable in the member journals before it is written in place.
	PolicyJournal uint32 = 2
	// PolicyCoW: full-stripe writes go to a spare stripe and the stripe map
	// follows, with no second copy (cow.go); partial-stripe writes are journaled
	// as with PolicyJournal.
	PolicyCoW uint32 = 3
)

// UUID is a 16-byte random identifier.
type UUID [16]byte

func newUUID() UUID {
	var u UUID
	if _, err := rand.Read(u[:]); err != nil {
		panic("raid: crypto/rand: " + err.Error())
	}
	return u
}

func (u UUID) String() string {
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// RoleEntry is one row of the role table: which device holds the role, in what state.
type RoleEntry struct {
	Device UUID
	State  RoleState
	Flags  uint32
}

// Superblock is the decoded superblock of one member.
type Superblock struct {
	Version      uint32
	ArrayUUID    UUID
	DeviceUUID   UUID
	Level        uint32
	Layout       uint32
	Chunk        uint32 // bytes
	RaidDevices  uint32
	Role         uint32 // RoleSpare for a spare
	Clean        bool
	Events       uint64
	CTime        uint64 // unix seconds
	DataOffset   uint64 // bytes from the member's start
	DataSize     uint64 // bytes of data per member
	JournalOff   uint64 // bytes from the member's start
	JournalSlots uint32
	// JournalDurable: every journal entry with a sequence number up to this one is
	// durable in place; replay ignores them (0: none known).
	JournalDurable uint64
	BlockSize      uint32
	Name           string // at most 32 bytes
	Policy         uint32
	Roles          []RoleEntry // RaidDevices entries
	// Write-intent bitmap (BitmapOff 0: none): BitmapBytes bytes at BitmapOff, one
	// bit per BitmapChunk bytes of each member's data area.
	BitmapOff   uint64
	BitmapChunk uint64
	BitmapBytes uint32
	// Locations are the volume specs the members of each role were last opened
	// by ("" unknown): hints with which assembly finds a member that replaced one
	// of those it was given. Empty in arrays written before 2026-12-03, and when
	// the specs do not fit in the 2304 bytes set aside.
	Locations []string
	// CoW arrays: the tag area (one 32-byte tag per physical stripe) at TagOff,
	// and how many of the DataSize/Chunk physical stripes are spare.
	TagOff       uint64
	SpareStripes uint32
}

// Marshal encodes the superblock into SuperblockSize bytes with its CRC.
func (sb *Superblock) Marshal() ([]byte, error) {
	if sb.RaidDevices == 0 || sb.RaidDevices > MaxMembers || len(sb.Roles) != int(sb.RaidDevices) {
		return nil, fmt.Errorf("marshal superblock of array %s: %d raid devices, %d roles: %w", sb.ArrayUUID, sb.RaidDevices, len(sb.Roles), ErrBadGeometry)
	}
	if len(sb.Name) > 32 {
		return nil, fmt.Errorf("marshal superblock: name %q longer than 32 bytes: %w", sb.Name, ErrBadGeometry)
	}
	b := make([]byte, SuperblockSize)
	le := binary.LittleEndian
	copy(b[0:8], superMagic[:])
	if sb.Policy == PolicyCoW {
		le.PutUint32(b[8:], SuperblockVersionCoW)
	} else {
		le.PutUint32(b[8:], SuperblockVersion)
	}
	copy(b[16:32], sb.ArrayUUID[:])
	copy(b[32:48], sb.DeviceUUID[:])
	le.PutUint32(b[48:], sb.Level)
	le.PutUint32(b[52:], sb.Layout)
	le.PutUint32(b[56:], sb.Chunk)
	le.PutUint32(b[60:], sb.RaidDevices)
	le.PutUint32(b[64:], sb.Role)
	var st uint32
	if sb.Clean {
		st |= stateClean
	}
	le.PutUint32(b[68:], st)
	le.PutUint64(b[72:], sb.Events)
	le.PutUint64(b[80:], sb.CTime)
	le.PutUint64(b[88:], sb.DataOffset)
	le.PutUint64(b[96:], sb.DataSize)
	le.PutUint64(b[104:], sb.JournalOff)
	le.PutUint32(b[112:], sb.JournalSlots)
	le.PutUint32(b[116:], sb.BlockSize)
	le.PutUint64(b[120:], sb.JournalDurable)
	copy(b[128:160], sb.Name)
	le.PutUint32(b[164:], sb.Policy)
	for i, r := range sb.Roles {
		o := roleTableOff + i*roleEntrySize
		copy(b[o:o+16], r.Device[:])
		le.PutUint32(b[o+16:], uint32(r.State))
		le.PutUint32(b[o+20:], r.Flags)
	}
	le.PutUint64(b[bitmapFields:], sb.BitmapOff)
	le.PutUint64(b[bitmapFields+8:], sb.BitmapChunk)
	le.PutUint32(b[bitmapFields+16:], sb.BitmapBytes)
	le.PutUint64(b[cowFields:], sb.TagOff)
	le.PutUint32(b[cowFields+8:], sb.SpareStripes)
	le.PutUint32(b[12:], crc32.Checksum(b, castagnoli)) // the location area is still zero
	putLocations(b[locationsOff:locationsEnd], sb.Locations, int(sb.RaidDevices))
	return b, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// UnmarshalSuperblock decodes and validates a superblock. It returns ErrNoSuperblock
// when the magic is absent and ErrBadSuperblock for a bad CRC, version or field.
func UnmarshalSuperblock(b []byte) (*Superblock, error) {
	if len(b) < SuperblockSize {
		return nil, fmt.Errorf("superblock of %d bytes: %w", len(b), ErrBadSuperblock)
	}
	b = b[:SuperblockSize]
	if !bytes.Equal(b[0:8], superMagic[:]) {
		return nil, ErrNoSuperblock
	}
	le := binary.LittleEndian
	want := le.Uint32(b[12:])
	c := make([]byte, SuperblockSize)
	copy(c, b)
	le.PutUint32(c[12:], 0)
	clear(c[locationsOff:locationsEnd]) // it has its own CRC
	if got := crc32.Checksum(c, castagnoli); got != want {
		return nil, fmt.Errorf("superblock crc %08x, stored %08x: %w", got, want, ErrBadSuperblock)
	}
	sb := &Superblock{Version: le.Uint32(b[8:])}
	if sb.Version != SuperblockVersion && sb.Version != SuperblockVersionCoW {
		return nil, fmt.Errorf("superblock version %d (this build reads %d and %d): %w", sb.Version, SuperblockVersion, SuperblockVersionCoW, ErrBadSuperblock)
	}
	copy(sb.ArrayUUID[:], b[16:32])
	copy(sb.DeviceUUID[:], b[32:48])
	sb.Level = le.Uint32(b[48:])
	sb.Layout = le.Uint32(b[52:])
	sb.Chunk = le.Uint32(b[56:])
	sb.RaidDevices = le.Uint32(b[60:])
	sb.Role = le.Uint32(b[64:])
	sb.Clean = le.Uint32(b[68:])&stateClean != 0
	sb.Events = le.Uint64(b[72:])
	sb.CTime = le.Uint64(b[80:])
	sb.DataOffset = le.Uint64(b[88:])
	sb.DataSize = le.Uint64(b[96:])
	sb.JournalOff = le.Uint64(b[104:])
	sb.JournalSlots = le.Uint32(b[112:])
	sb.BlockSize = le.Uint32(b[116:])
	sb.JournalDurable = le.Uint64(b[120:])
	sb.Name = string(bytes.TrimRight(b[128:160], "\x00"))
	sb.Policy = le.Uint32(b[164:])
	if sb.Policy > PolicyCoW || (sb.Policy == PolicyCoW) != (sb.Version == SuperblockVersionCoW) {
		return nil, fmt.Errorf("superblock version %d with write-hole policy %d: %w", sb.Version, sb.Policy, ErrBadSuperblock)
	}
	if sb.RaidDevices == 0 || sb.RaidDevices > MaxMembers {
		return nil, fmt.Errorf("superblock: %d raid devices: %w", sb.RaidDevices, ErrBadSuperblock)
	}
	if sb.Role != RoleSpare && sb.Role >= sb.RaidDevices {
		return nil, fmt.Errorf("superblock: role %d of %d: %w", sb.Role, sb.RaidDevices, ErrBadSuperblock)
	}
	if sb.BlockSize == 0 || sb.BlockSize > SuperblockSize || sb.Chunk == 0 || sb.Chunk%sb.BlockSize != 0 {
		return nil, fmt.Errorf("superblock: chunk %d, block size %d: %w", sb.Chunk, sb.BlockSize, ErrBadSuperblock)
	}
	sb.BitmapOff = le.Uint64(b[bitmapFields:])
	sb.BitmapChunk = le.Uint64(b[bitmapFields+8:])
	sb.BitmapBytes = le.Uint32(b[bitmapFields+16:])
	sb.TagOff = le.Uint64(b[cowFields:])
	sb.SpareStripes = le.Uint32(b[cowFields+8:])
	if sb.BitmapOff != 0 && (sb.BitmapChunk == 0 || sb.BitmapChunk%uint64(sb.Chunk) != 0 || sb.BitmapBytes == 0 ||
		sb.BitmapBytes > 1<<20 || sb.BitmapBytes%sb.BlockSize != 0 || sb.BitmapOff%uint64(sb.BlockSize) != 0) {
		return nil, fmt.Errorf("superblock: bitmap at %d, %d bytes, %d bytes per bit: %w", sb.BitmapOff, sb.BitmapBytes, sb.BitmapChunk, ErrBadSuperblock)
	}
	sb.Locations = parseLocations(b[locationsOff:locationsEnd], int(sb.RaidDevices))
	sb.Roles = make([]RoleEntry, sb.RaidDevices)
	for i := range sb.Roles {
		o := roleTableOff + i*roleEntrySize
		copy(sb.Roles[i].Device[:], b[o:o+16])
		sb.Roles[i].State = RoleState(le.Uint32(b[o+16:]))
		sb.Roles[i].Flags = le.Uint32(b[o+20:])
	}
	return sb, nil
}

// The location area has its own CRC, outside the superblock's: the superblock's
// fields that change (events, state, role table of up to 14 members) all sit in its
// first 512-byte sector, so a superblock write torn between sectors leaves it whole,
// old or new; a torn location area is merely ignored.

// putLocations writes the CRC-32C of the rest of area, then one NUL-terminated spec
// per role; or leaves area zero when they do not fit or a spec holds a NUL.
func putLocations(area []byte, locs []string, n int) {
	if len(locs) != n {
		return
	}
	o := 4
	for _, l := range locs {
		if strings.IndexByte(l, 0) >= 0 || o+len(l)+1 > len(area) {
			clear(area)
			return
		}
		o += copy(area[o:], l)
		area[o] = 0
		o++
	}
	binary.LittleEndian.PutUint32(area, crc32.Checksum(area[4:], castagnoli))
}

// parseLocations reads what putLocations wrote: n specs, or nil when the area is empty,
// torn or malformed (they are hints).
func parseLocations(area []byte, n int) []string {
	if binary.LittleEndian.Uint32(area) != crc32.Checksum(area[4:], castagnoli) {
		return nil
	}
	area = area[4:]
	locs := make([]string, 0, n)
	for range n {
		i := bytes.IndexByte(area, 0)
		if i < 0 {
			return nil
		}
		locs = append(locs, string(area[:i]))
		area = area[i+1:]
	}
	for _, l := range locs {
		if l != "" {
			return locs
		}
	}
	return nil
}
