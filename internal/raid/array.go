package raid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/reedsolomon"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// Member is one device given to Create or Assemble. A nil Dev stands for a missing member.
type Member struct {
	Dev  blockdev.Device
	Name string // for messages: a path or a volume spec
}

// member is a device holding a role (or a spare) in a running array.
type member struct {
	dev       blockdev.Device
	name      string
	uuid      UUID
	state     atomic.Uint32 // RoleState
	flags     uint32
	recovered atomic.Int64 // rebuilding: data bytes rebuilt so far
	reAdd     atomic.Bool  // FlagReAdd: only the bitmap's dirty regions are rebuilt
}

func (m *member) st() RoleState { return RoleState(m.state.Load()) }

// Array is a running RAID array. It is a blockdev.Device.
type Array struct {
	log      *slog.Logger
	g        geometry
	uuid     UUID
	name     string
	policy   uint32
	jOff     int64
	jSlots   int
	ctime    uint64
	readOnly bool

	mu     sync.Mutex // guards roles, spares, events, clean, superblock writes
	roles  []*member  // by role; nil: missing
	spares []*member
	events uint64
	clean  atomic.Bool
	failed atomic.Bool

	locks [1024]sync.Mutex
	enc   reedsolomon.Encoder
	// parityPool recycles the parity buffers of full-stripe writes.
	parityPool sync.Pool
	j          journal
	cow        *cowState // PolicyCoW: the stripe map (nil otherwise)
	// jbufPool recycles the per-member journal write buffers (*[]byte).
	jbufPool sync.Pool
	rr       atomic.Uint64

	ctx      context.Context
	cancel   context.CancelFunc
	bg       sync.WaitGroup
	rb       rebuildState
	lastIO   atomic.Int64 // unix nanoseconds of the last foreground I/O
	minSpeed atomic.Int64 // rebuild bytes/s when foreground I/O is active
	maxSpeed atomic.Int64 // rebuild bytes/s when idle (0: unlimited)

	lk  *arrayLock     // the run-directory lock, when taken
	ctl *controlServer // the control socket, when served

	bm *bitmap // write-intent bitmap (nil: none)
	// ghosts are the device UUIDs of members absent from their roles (removed, or
	// not there at assembly), kept in the role table so that they can be re-added.
	ghosts []UUID
	// locations are the member specs the freshest superblock held at assembly
	// (Superblock.Locations), kept for roles that have no member now.
	locations []string
}

// SetSpeed sets the rebuild throttle: min bytes/s while foreground I/O runs, max when
// idle (0: unlimited).
func (a *Array) SetSpeed(min, max int64) { a.minSpeed.Store(min); a.maxSpeed.Store(max) }

// Speed returns the rebuild throttle set by SetSpeed.
func (a *Array) Speed() (min, max int64) { return a.minSpeed.Load(), a.maxSpeed.Load() }

var (
	_ blockdev.Device      = (*Array)(nil)
	_ blockdev.WriteCacher = (*Array)(nil)
	_ blockdev.ReadOnlyer  = (*Array)(nil)
	_ blockdev.Identifier  = (*Array)(nil)
	_ blockdev.Unmapper    = (*Array)(nil)
	_ blockdev.WriteZeroer = (*Array)(nil)
	_ io.Closer            = (*Array)(nil)
)

// Size is the array capacity in bytes.
func (a *Array) Size() int64 { return a.g.size() }

// BlockSize is the members' logical block size.
func (a *Array) BlockSize() int { return a.g.bs }

// ReadOnly reports whether the array was assembled read-only.
func (a *Array) ReadOnly() bool { return a.readOnly }

// WriteCacheEnabled is true: writes are durable only after Flush.
func (a *Array) WriteCacheEnabled() bool { return true }

// DeviceID is the array UUID.
func (a *Array) DeviceID() string { return "raid-" + a.uuid.String() }

// UUID is the array UUID.
func (a *Array) UUID() UUID { return a.uuid }

func (a *Array) lock(key int64) *sync.Mutex { return &a.locks[uint64(key)%uint64(len(a.locks))] }

// snapshot returns the current role table (pointers; states are atomic).
func (a *Array) snapshot() []*member {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*member(nil), a.roles...)
}

func readable(m *member, moff, n int64) bool {
	if m == nil {
		return false
	}
	switch m.st() {
	case RoleActive:
		return true
	case RoleRebuilding:
		return moff+n <= m.recovered.Load()
	}
	return false
}

func writable(m *member) bool {
	return m != nil && (m.st() == RoleActive || m.st() == RoleRebuilding)
}

// readMember reads from a member's data area; an error fails the member.
func (a *Array) readMember(r int, m *member, p []byte, moff int64) error {
	if _, err := m.dev.ReadAt(p, a.g.dataOff+moff); err != nil {
		a.failMember(r, m, err)
		return fmt.Errorf("raid %s: read member %s at %d: %w", a.name, m.name, moff, err)
	}
	return nil
}

func (a *Array) writeMember(r int, m *member, p []byte, moff int64) error {
	if _, err := m.dev.WriteAt(p, a.g.dataOff+moff); err != nil {
		a.failMember(r, m, err)
		return fmt.Errorf("raid %s: write member %s at %d: %w", a.name, m.name, moff, err)
	}
	return nil
}

// failMember marks a member faulty after an I/O error and records it in the other
// members' superblocks. Losing more members than the level tolerates fails the array.
func (a *Array) failMember(r int, m *member, cause error) {
	a.mu.Lock()
	if r >= len(a.roles) || a.roles[r] != m || m.st() == RoleFaulty {
		a.mu.Unlock()
		return
	}
	m.state.Store(uint32(RoleFaulty))
	a.log.Error("raid member failed", "array", a.name, "member", m.name, "role", r, "err", cause)
	a.checkFailedLocked()
	if !a.readOnly {
		a.events++
		a.writeSuperblocksLocked()
	}
	a.startSpareLocked()
	a.mu.Unlock()
}

// FailMember marks the member named name faulty, as after an I/O error. Without force it
// refuses when that would take the array below its fault tolerance.
func (a *Array) FailMember(name string, force bool) error {
	a.mu.Lock()
	r := -1
	for i, m := range a.roles {
		if m != nil && m.name == name && m.st() != RoleFaulty {
			r = i
		}
	}
	if r < 0 {
		a.mu.Unlock()
		return fmt.Errorf("raid %s: fail %s: not an active member: %w", a.name, name, ErrNotMember)
	}
	m := a.roles[r]
	if !force && !a.survivesLocked(r) {
		a.mu.Unlock()
		return fmt.Errorf("raid %s: fail %s: the array could not serve data without it (use --force to fail it anyway): %w", a.name, name, ErrTolerance)
	}
	a.mu.Unlock()
	a.failMember(r, m, errors.New("failed by request"))
	return nil
}

// RemoveMember takes a faulty (or, with force, any) member out of its role; the role
// becomes missing.
func (a *Array) RemoveMember(name string, force bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, m := range a.spares {
		if m.name == name {
			a.spares = append(a.spares[:i], a.spares[i+1:]...)
			a.events++
			a.writeSuperblocksLocked()
			return nil
		}
	}
	for r, m := range a.roles {
		if m == nil || m.name != name {
			continue
		}
		if m.st() != RoleFaulty && !force {
			return fmt.Errorf("raid %s: remove %s: member is %s, fail it first (or use --force): %w", a.name, name, m.st(), ErrTolerance)
		}
		if m.st() != RoleFaulty && !a.survivesLocked(r) {
			return fmt.Errorf("raid %s: remove %s: %w", a.name, name, ErrTolerance)
		}
		a.roles[r] = nil
		a.ghosts[r] = m.uuid
		a.checkFailedLocked()
		a.events++
		a.writeSuperblocksLocked()
		return nil
	}
	return fmt.Errorf("raid %s: remove %s: %w", a.name, name, ErrNotMember)
}

// survivesLocked reports whether the array still serves data without role r.
func (a *Array) survivesLocked(r int) bool {
	ok := make([]bool, a.g.n)
	for i, m := range a.roles {
		ok[i] = i != r && m != nil && m.st() == RoleActive
	}
	return a.g.servable(ok)
}

// servable reports whether the members marked ok hold all the data.
func (g *geometry) servable(ok []bool) bool {
	switch g.level {
	case 0:
		for _, v := range ok {
			if !v {
				return false
			}
		}
		return true
	case 1, 10:
		groups, w := g.mirrorGroups()
		for gi := 0; gi < groups; gi++ {
			any := false
			for i := gi * w; i < gi*w+w; i++ {
				any = any || ok[i]
			}
			if !any {
				return false
			}
		}
		return true
	}
	lost := 0
	for _, v := range ok {
		if !v {
			lost++
		}
	}
	return lost <= g.parity()
}

func (a *Array) checkFailedLocked() {
	ok := make([]bool, a.g.n)
	for i, m := range a.roles {
		ok[i] = m != nil && m.st() == RoleActive
	}
	if !a.g.servable(ok) && !a.failed.Load() {
		a.failed.Store(true)
		a.log.Error("raid array failed: too many members lost", "array", a.name)
	}
}

// locationsLocked are the specs of the members holding each role, for the superblock:
// a role without a member keeps the location the array was assembled with.
func (a *Array) locationsLocked() []string {
	locs := make([]string, a.g.n)
	for r, m := range a.roles {
		switch {
		case m != nil && m.name != "missing":
			locs[r] = m.name
		case r < len(a.locations):
			locs[r] = a.locations[r]
		}
	}
	return locs
}

// roleTableLocked builds the role table that goes into every superblock.
func (a *Array) roleTableLocked() []RoleEntry {
	t := make([]RoleEntry, a.g.n)
	for r, m := range a.roles {
		if m == nil {
			if r < len(a.ghosts) {
				t[r] = RoleEntry{Device: a.ghosts[r], State: RoleMissing}
			}
			continue
		}
		t[r] = RoleEntry{Device: m.uuid, State: m.st(), Flags: m.flags}
		if m.reAdd.Load() {
			t[r].Flags |= FlagReAdd
		}
	}
	return t
}

func (a *Array) superblockFor(role uint32, m *member, table []RoleEntry) *Superblock {
	sb := &Superblock{
		ArrayUUID: a.uuid, DeviceUUID: m.uuid, Level: uint32(a.g.level), Chunk: uint32(a.g.chunk),
		RaidDevices: uint32(a.g.n), Role: role, Clean: a.clean.Load(), Events: a.events,
		CTime: a.ctime, DataOffset: uint64(a.g.dataOff), DataSize: uint64(a.g.dataSize),
		JournalOff: uint64(a.jOff), JournalSlots: uint32(a.jSlots), JournalDurable: a.j.durableSeq(), BlockSize: uint32(a.g.bs),
		Name: a.name, Policy: a.policy, Roles: table, Locations: a.locationsLocked(),
	}
	if a.cow != nil {
		sb.TagOff, sb.SpareStripes = uint64(a.cow.tagOff), uint32(a.g.spare)
	}
	if a.bm != nil {
		sb.BitmapOff, sb.BitmapChunk, sb.BitmapBytes = uint64(a.bm.off), uint64(a.bm.region), uint32(a.bm.size)
	}
	return sb
}

// writeSuperblocksLocked writes the current state to every present member and flushes.
// A member whose superblock write fails is marked faulty (it is now stale anyway).
func (a *Array) writeSuperblocksLocked() {
	if a.readOnly {
		return
	}
	for attempt := 0; attempt < 3; attempt++ {
		table := a.roleTableLocked()
		bad := false
		put := func(role uint32, m *member) {
			b, err := a.superblockFor(role, m, table).Marshal()
			if err == nil {
				_, err = m.dev.WriteAt(b, 0)
			}
			if err == nil {
				err = m.dev.Flush()
			}
			if err != nil {
				a.log.Error("raid superblock write failed", "array", a.name, "member", m.name, "err", err)
				if role != RoleSpare {
					m.state.Store(uint32(RoleFaulty))
					bad = true
				}
			}
		}
		for r, m := range a.roles {
			if m != nil && m.st() != RoleFaulty {
				put(uint32(r), m)
			}
		}
		for _, m := range a.spares {
			put(RoleSpare, m)
		}
		if !bad {
			return
		}
		a.checkFailedLocked()
		a.events++
	}
}

// markDirty records in the superblocks that writes are under way.
func (a *Array) markDirty() {
	if !a.clean.Load() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.clean.Load() {
		a.clean.Store(false)
		a.events++
		a.writeSuperblocksLocked()
	}
}

// Flush makes every completed write durable on every member.
func (a *Array) Flush() error {
	if a.failed.Load() {
		return fmt.Errorf("raid %s: flush: %w", a.name, ErrFailed)
	}
	if a.cow != nil {
		a.settle()
	} else {
		a.flushAll()
	}
	if a.failed.Load() {
		return fmt.Errorf("raid %s: flush: %w", a.name, ErrFailed)
	}
	return nil
}

func (a *Array) flushAll() {
	roles := a.snapshot()
	var wg sync.WaitGroup
	for r, m := range roles {
		if !writable(m) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.dev.Flush(); err != nil {
				a.failMember(r, m, err)
			}
		}()
	}
	wg.Wait()
}

// Close stops background work, marks the array clean and closes the members.
func (a *Array) Close() error {
	a.cancel() // stops rebuilds and scrubs, also those of control requests
	if a.ctl != nil {
		a.ctl.close()
	}
	a.bg.Wait()
	var errs []error
	if !a.readOnly && !a.failed.Load() {
		if a.cow != nil {
			a.settle()
		}
		a.flushAll()
		a.cleanBitmap(true)
		a.mu.Lock()
		a.clean.Store(true)
		a.events++
		a.writeSuperblocksLocked()
		a.mu.Unlock()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range append(append([]*member(nil), a.roles...), a.spares...) {
		if m == nil {
			continue
		}
		if c, ok := m.dev.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close member %s: %w", m.name, err))
			}
		}
	}
	a.lk.release()
	a.lk = nil
	return errors.Join(errs...)
}

func (a *Array) touch() { a.lastIO.Store(time.Now().UnixNano()) }

// levelName is "raid5" and so on.
func (a *Array) levelName() string { return fmt.Sprintf("raid%d", a.g.level) }

func joinNames(ns []string) string { return strings.Join(ns, ", ") }
