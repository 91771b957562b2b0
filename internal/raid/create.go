package raid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/klauspost/reedsolomon"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// CreateOptions describe a new array.
type CreateOptions struct {
	Level int
	Chunk int64 // bytes (0: 64 KiB)
	Name  string
	// NoJournal leaves the RAID-5/6 write hole open (PolicyNone); the default
	// journals every stripe update (PolicyJournal).
	NoJournal    bool
	JournalSlots int // 0: 32
	// CoW writes full stripes of RAID-5/6 to spare stripes and moves the stripe
	// map (PolicyCoW): the write hole stays closed without a second copy of the
	// data; partial-stripe writes are still journaled. It excludes NoJournal.
	CoW bool
	// NoBitmap leaves out the write-intent bitmap that levels 1, 5, 6 and 10 get by
	// default; BitmapChunk is the member data bytes per bit (0: 64 MiB, or more so
	// that 32768 bits cover a member).
	NoBitmap    bool
	BitmapChunk int64
	// WriteMostly lists member indexes (RAID-1/10) that reads avoid.
	WriteMostly []int
	// Force creates over members that already carry a superblock.
	Force bool
	// AssumeClean skips zeroing the members' data areas.
	AssumeClean bool
}

// ReadSuperblock reads and decodes the superblock at the start of dev.
func ReadSuperblock(dev blockdev.Device) (*Superblock, error) {
	b := make([]byte, SuperblockSize)
	if _, err := dev.ReadAt(b, 0); err != nil {
		return nil, err
	}
	return UnmarshalSuperblock(b)
}

// Create writes superblocks to members (nil Dev: created missing) and zeroes the data
// areas so that parity and mirrors start consistent. It refuses, naming them, members
// that already carry a rampart superblock unless opts.Force.
func Create(members []Member, opts CreateOptions) error {
	if opts.Chunk == 0 {
		opts.Chunk = 64 << 10
	}
	if opts.JournalSlots == 0 {
		opts.JournalSlots = 32
	}
	bs, minSize := 0, int64(-1)
	var carrying []string
	for _, m := range members {
		if m.Dev == nil {
			continue
		}
		if bs == 0 {
			bs = m.Dev.BlockSize()
		}
		if m.Dev.BlockSize() != bs {
			return fmt.Errorf("create: member %s has block size %d, others %d: %w", m.Name, m.Dev.BlockSize(), bs, ErrBadGeometry)
		}
		if minSize < 0 || m.Dev.Size() < minSize {
			minSize = m.Dev.Size()
		}
		if _, err := ReadSuperblock(m.Dev); !errors.Is(err, ErrNoSuperblock) {
			carrying = append(carrying, m.Name)
		}
	}
	if bs == 0 {
		return fmt.Errorf("create: no member present: %w", ErrBadGeometry)
	}
	if len(carrying) > 0 && !opts.Force {
		return fmt.Errorf("create: %s: %w (creating would destroy it; use --force)", joinNames(carrying), ErrHasSuperblock)
	}
	g := geometry{level: opts.Level, n: len(members), chunk: opts.Chunk, bs: bs}
	policy := PolicyNone
	jOff, jBytes := int64(SuperblockSize), int64(0)
	bmOff := int64(0)
	if g.level != 0 && !opts.NoBitmap {
		bmOff = jOff
		jOff += bitmapBytes
	}
	if opts.CoW && (opts.NoJournal || g.parity() == 0) {
		return fmt.Errorf("create: copy-on-write stripes need RAID-5 or 6 with its journal: %w", ErrBadGeometry)
	}
	if g.parity() > 0 && !opts.NoJournal {
		policy = PolicyJournal
		jBytes = int64(opts.JournalSlots) * (journalHeader + g.chunk)
	}
	g.dataOff = (jOff + jBytes + g.chunk - 1) / g.chunk * g.chunk
	if minSize > g.dataOff {
		g.dataSize = (minSize - g.dataOff) / g.chunk * g.chunk
	}
	tagOff := int64(0)
	if opts.CoW {
		// The tag area goes between the journal and the data; size it for the
		// stripes that fit beside it.
		policy = PolicyCoW
		tagOff = jOff + jBytes
		phys := g.dataSize / g.chunk
		for phys > 0 {
			g.dataOff = (tagOff + cowTagBytes(phys, bs) + g.chunk - 1) / g.chunk * g.chunk
			if g.dataOff+phys*g.chunk <= minSize {
				break
			}
			phys--
		}
		g.dataSize = phys * g.chunk
		g.spare = cowSpare(phys)
		if phys > 1<<32-2 {
			return fmt.Errorf("create: %d stripes per member, more than the stripe map holds (use a larger chunk): %w", phys, ErrBadGeometry)
		}
	}
	if err := g.validate(); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	a := &Array{
		log: slog.New(slog.DiscardHandler), g: g, uuid: newUUID(), name: opts.Name, policy: policy,
		jOff: jOff, jSlots: opts.JournalSlots, ctime: uint64(time.Now().Unix()),
	}
	if opts.CoW {
		a.cow = newCowState(tagOff, g.dataSize/g.chunk, g.spare, bs)
		a.cow.identity()
	}
	if bmOff != 0 {
		region := opts.BitmapChunk
		if region == 0 {
			region = 64 << 20
		}
		region = max(region, (g.dataSize+bitmapBytes*8-1)/(bitmapBytes*8))
		region = (region + g.chunk - 1) / g.chunk * g.chunk
		a.bm = newBitmap(bmOff, bitmapBytes, region, g.dataSize)
	}
	if a.name == "" {
		a.name = a.uuid.String()[:8]
	}
	a.roles = make([]*member, g.n)
	wm := map[int]bool{}
	for _, i := range opts.WriteMostly {
		wm[i] = true
	}
	for i, m := range members {
		if m.Dev == nil {
			continue
		}
		mm := &member{dev: m.Dev, name: m.Name, uuid: newUUID()}
		if wm[i] {
			mm.flags |= FlagWriteMostly
		}
		mm.state.Store(uint32(RoleActive))
		a.roles[i] = mm
		if !opts.AssumeClean {
			if err := blockdev.WriteZeroes(m.Dev, g.dataOff, g.dataSize); err != nil {
				return fmt.Errorf("create: zero member %s: %w", m.Name, err)
			}
		}
		if jBytes > 0 || bmOff != 0 {
			if err := blockdev.WriteZeroes(m.Dev, SuperblockSize, jOff+jBytes-SuperblockSize); err != nil {
				return fmt.Errorf("create: zero bitmap and journal of member %s: %w", m.Name, err)
			}
		}
		if a.cow != nil {
			if err := a.createCow(mm); err != nil {
				return fmt.Errorf("create: %w", err)
			}
		}
	}
	a.clean.Store(true)
	a.events = 1
	a.mu.Lock()
	a.writeSuperblocksLocked()
	a.mu.Unlock()
	for _, m := range a.roles {
		if m != nil && m.st() == RoleFaulty {
			return fmt.Errorf("create: writing the superblock of %s failed", m.name)
		}
	}
	return nil
}

// AssembleOptions tune Assemble.
type AssembleOptions struct {
	Logger   *slog.Logger
	ReadOnly bool
	// DropStale assembles without stale members instead of refusing them.
	DropStale bool
	// MinSpeed and MaxSpeed throttle rebuilds (bytes/s; defaults 1 MiB/s and unlimited).
	MinSpeed, MaxSpeed int64
	// NoAutoRebuild leaves present spares idle.
	NoAutoRebuild bool
	// Lock takes the array's advisory lock in RunDir() (refusing, with ErrInUse and
	// the holder's pid, an array another process has assembled) and holds it until
	// Close. Without a usable run directory nothing is locked.
	Lock bool
	// LockWait is how long Lock waits for another holder to let go (0: refuse at
	// once). Read-only assemblies take the lock shared.
	LockWait time.Duration
	// Control serves management requests on the array's control socket in
	// RunDir() until Close (best effort: a failure to listen is logged).
	Control bool
	// Open, when set, opens a member by its spec. Assembly uses it to find a member
	// missing from those it was given at the location the freshest superblock
	// records for its role: e.g. the spare that replaced a failed disk, when the
	// array is assembled again from its original list.
	Open func(ctx context.Context, spec string) (blockdev.Device, error)
}

// Assemble starts an array from its members' superblocks. Members may come in any
// order; a nil Dev marks a member known to be missing. Members of another array or
// stale members (the freshest superblock no longer lists them as active) are refused,
// named in the error. The journal is replayed and an unclean array resynced before
// Assemble returns; rebuilds onto spares run in the background, bound to ctx.
func Assemble(ctx context.Context, members []Member, opts AssembleOptions) (*Array, error) {
	type found struct {
		m  Member
		sb *Superblock
	}
	var fs []found
	var fresh *Superblock
	for _, m := range members {
		if m.Dev == nil {
			continue
		}
		sb, err := ReadSuperblock(m.Dev)
		if err != nil {
			return nil, fmt.Errorf("assemble: member %s: %w", m.Name, err)
		}
		fs = append(fs, found{m, sb})
		if fresh == nil || sb.Events > fresh.Events {
			fresh = sb
		}
	}
	if fresh == nil {
		return nil, fmt.Errorf("assemble: no member present: %w", ErrFailed)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Members found by the superblock's locations, closed again if assembly fails.
	var extra []Member
	closeExtra := func() { CloseMembers(extra) }
	if opts.Open != nil && len(fresh.Locations) == len(fresh.Roles) {
		given := map[UUID]bool{}
		names := map[string]bool{}
		for _, f := range fs {
			given[f.sb.DeviceUUID] = true
		}
		for _, m := range members {
			names[m.Name] = true
		}
		for r, e := range fresh.Roles {
			loc := fresh.Locations[r]
			if (e.State != RoleActive && e.State != RoleRebuilding) || given[e.Device] || loc == "" || names[loc] {
				continue
			}
			d, err := opts.Open(ctx, loc)
			if err != nil {
				log.Warn("raid member not given and not found where the superblock says", "array", fresh.Name, "role", r, "location", loc, "err", err)
				continue
			}
			sb, err := ReadSuperblock(d)
			if err != nil || sb.ArrayUUID != fresh.ArrayUUID || sb.DeviceUUID != e.Device {
				CloseMembers([]Member{{Dev: d}})
				log.Warn("raid member location in the superblock holds another device", "array", fresh.Name, "role", r, "location", loc)
				continue
			}
			log.Info("raid member found by the superblock (not among those given)", "array", fresh.Name, "role", r, "member", loc)
			m := Member{Dev: d, Name: loc}
			extra = append(extra, m)
			fs = append(fs, found{m, sb})
			names[loc] = true
			if sb.Events > fresh.Events {
				fresh = sb
			}
		}
	}
	var foreign []string
	type staleMember struct {
		m    Member
		role uint32
		why  string
	}
	var stale []staleMember
	for _, f := range fs {
		if f.sb.ArrayUUID != fresh.ArrayUUID {
			foreign = append(foreign, fmt.Sprintf("%s (array %s)", f.m.Name, f.sb.ArrayUUID))
		}
	}
	if len(foreign) > 0 {
		closeExtra()
		return nil, fmt.Errorf("assemble array %s: %s: %w", fresh.ArrayUUID, joinNames(foreign), ErrForeign)
	}
	g := geometry{level: int(fresh.Level), n: int(fresh.RaidDevices), chunk: int64(fresh.Chunk), bs: int(fresh.BlockSize),
		dataOff: int64(fresh.DataOffset), dataSize: int64(fresh.DataSize)}
	if fresh.Policy == PolicyCoW {
		g.spare = int64(fresh.SpareStripes)
		if g.parity() == 0 || fresh.TagOff < SuperblockSize || g.chunk <= 0 || g.bs < cowTagSize ||
			int64(fresh.TagOff)+cowTagBytes(g.dataSize/g.chunk, g.bs) > g.dataOff {
			closeExtra()
			return nil, fmt.Errorf("assemble array %s: stripe map fields (tags at %d, %d spare stripes): %w", fresh.ArrayUUID, fresh.TagOff, fresh.SpareStripes, ErrBadSuperblock)
		}
	}
	if err := g.validate(); err != nil {
		closeExtra()
		return nil, fmt.Errorf("assemble array %s: %w", fresh.ArrayUUID, err)
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &Array{
		log: log, g: g, uuid: fresh.ArrayUUID, name: fresh.Name, policy: fresh.Policy,
		jOff: int64(fresh.JournalOff), jSlots: int(fresh.JournalSlots), ctime: fresh.CTime,
		readOnly: opts.ReadOnly, roles: make([]*member, g.n), ghosts: make([]UUID, g.n), events: fresh.Events,
		locations: fresh.Locations, ctx: cctx, cancel: cancel,
	}
	if opts.MinSpeed == 0 {
		opts.MinSpeed = 1 << 20
	}
	a.SetSpeed(opts.MinSpeed, opts.MaxSpeed)
	a.clean.Store(true)
	for _, f := range fs {
		if !f.sb.Clean {
			a.clean.Store(false)
		}
		if f.sb.ArrayUUID == fresh.ArrayUUID {
			a.j.durable = max(a.j.durable, f.sb.JournalDurable)
			a.j.seq = a.j.durable
		}
		mm := &member{dev: f.m.Dev, name: f.m.Name, uuid: f.sb.DeviceUUID}
		if f.m.Dev.Size() < g.dataOff+g.dataSize || f.m.Dev.BlockSize() != g.bs {
			cancel()
			closeExtra()
			return nil, fmt.Errorf("assemble array %s: member %s is smaller than the array's members or has another block size: %w", a.name, f.m.Name, ErrBadGeometry)
		}
		if f.sb.Role == RoleSpare {
			a.spares = append(a.spares, mm)
			continue
		}
		e := fresh.Roles[f.sb.Role]
		if e.Device != f.sb.DeviceUUID || (e.State != RoleActive && e.State != RoleRebuilding) {
			stale = append(stale, staleMember{f.m, f.sb.Role, fmt.Sprintf("%s (role %d, events %d < %d)", f.m.Name, f.sb.Role, f.sb.Events, fresh.Events)})
			continue
		}
		if a.roles[f.sb.Role] != nil {
			cancel()
			closeExtra()
			return nil, fmt.Errorf("assemble array %s: members %s and %s both claim role %d", a.name, a.roles[f.sb.Role].name, f.m.Name, f.sb.Role)
		}
		mm.flags = e.Flags &^ FlagReAdd
		mm.reAdd.Store(e.Flags&FlagReAdd != 0)
		// A rebuild interrupted by a stop starts over.
		mm.state.Store(uint32(e.State))
		a.roles[f.sb.Role] = mm
	}
	for r, e := range fresh.Roles {
		// Absent now; it may be re-added (not a new member whose rebuild had not
		// finished: it holds nothing yet).
		if a.roles[r] == nil && (e.State != RoleRebuilding || e.Flags&FlagReAdd != 0) {
			a.ghosts[r] = e.Device
		}
	}
	// A stale member whose role another member now holds was replaced (a spare
	// rebuilt in its place): it is left out, by name, and is no reason to refuse.
	var refused []string
	var dropped []Member // closed once the array runs without them
	for _, st := range stale {
		dropped = append(dropped, st.m)
		if h := a.roles[st.role]; h != nil {
			log.Warn("raid member left out: stale, replaced by another member", "array", a.name, "member", st.m.Name, "role", st.role, "holder", h.name)
			continue
		}
		refused = append(refused, st.why)
	}
	if len(refused) > 0 && !opts.DropStale {
		cancel()
		closeExtra()
		return nil, fmt.Errorf("assemble array %s: %s: %w (it missed updates; add it back to rebuild it)", a.name, joinNames(refused), ErrStale)
	}
	if opts.Lock {
		lk, err := lockArray(a.uuid, opts.ReadOnly, opts.LockWait)
		if err != nil {
			cancel()
			closeExtra()
			return nil, fmt.Errorf("assemble array %s: %w", a.name, err)
		}
		a.lk = lk
	}
	// fail undoes the assembly on an error from here on.
	fail := func(err error) (*Array, error) {
		cancel()
		closeExtra()
		a.lk.release()
		return nil, fmt.Errorf("assemble array %s: %w", a.name, err)
	}
	if g.parity() == 2 {
		enc, err := reedsolomon.New(g.dataDisks(), 2)
		if err != nil {
			return fail(err)
		}
		a.enc = enc
	}
	a.mu.Lock()
	a.checkFailedLocked()
	a.mu.Unlock()
	if a.failed.Load() {
		return fail(fmt.Errorf("%d of %d members usable: %w", a.activeCount(), g.n, ErrFailed))
	}
	if fresh.BitmapOff != 0 && g.level != 0 {
		a.bm = newBitmap(int64(fresh.BitmapOff), int(fresh.BitmapBytes), int64(fresh.BitmapChunk), g.dataSize)
		for _, m := range a.roles {
			if m != nil && (m.st() == RoleActive || m.st() == RoleRebuilding) {
				if err := a.bm.load(m); err != nil {
					return fail(err)
				}
			}
		}
	}
	if fresh.Policy == PolicyCoW {
		a.cow = newCowState(int64(fresh.TagOff), g.dataSize/g.chunk, g.spare, g.bs)
		if err := a.loadCow(); err != nil {
			return fail(err)
		}
	}
	if err := a.recover(); err != nil {
		return fail(err)
	}
	if a.cow != nil && !a.readOnly {
		if err := a.finishCow(); err != nil {
			return fail(err)
		}
	}
	if !a.readOnly {
		a.mu.Lock()
		a.events++
		a.writeSuperblocksLocked()
		if !opts.NoAutoRebuild {
			for r, m := range a.roles {
				if m != nil && m.st() == RoleRebuilding {
					a.startRebuildLocked(r, m)
				}
			}
			a.startSpareLocked()
		}
		a.mu.Unlock()
	}
	if a.bm != nil && !a.readOnly {
		a.bg.Add(1)
		go a.bitmapCleaner()
	}
	if opts.Control {
		if err := a.serveControl(); err != nil {
			a.log.Warn("raid array served without a control socket", "array", a.name, "err", err)
		}
	}
	CloseMembers(dropped)
	return a, nil
}

func (a *Array) activeCount() int {
	n := 0
	for _, m := range a.snapshot() {
		if m != nil && m.st() == RoleActive {
			n++
		}
	}
	return n
}

// recover replays the journal and resyncs an array that was not shut down cleanly.
func (a *Array) recover() error {
	if a.readOnly {
		return nil
	}
	if a.journaled() {
		if err := a.replayJournal(); err != nil {
			return err
		}
	}
	for _, m := range a.roles {
		if m != nil && m.st() == RoleRebuilding {
			m.recovered.Store(0)
		}
	}
	if a.clean.Load() || a.g.level == 0 || a.journaled() {
		return nil
	}
	if a.bm != nil {
		a.log.Warn("raid array was not shut down cleanly: resyncing the regions the bitmap marks dirty", "array", a.name, "regions", a.bm.dirtyCount())
	} else {
		a.log.Warn("raid array was not shut down cleanly: resyncing", "array", a.name)
	}
	_, err := a.scrub(a.ctx, true, true, nil)
	return err
}
