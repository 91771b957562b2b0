package raid

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// rebuildState is the progress of the running rebuild, for Status.
type rebuildState struct {
	mu      sync.Mutex
	active  bool
	role    int
	member  string
	done    int64
	total   int64
	started time.Time
	err     error
	doneCh  chan struct{}
}

// AddMember adds dev to the array: into the first missing or faulty role, where it is
// rebuilt in the background (Wait waits for it), or else as a spare.
func (a *Array) AddMember(dev blockdev.Device, name string) error {
	if dev.BlockSize() != a.g.bs || dev.Size() < a.g.dataOff+a.g.dataSize {
		return fmt.Errorf("raid %s: add %s: needs block size %d and %d bytes: %w", a.name, name, a.g.bs, a.g.dataOff+a.g.dataSize, ErrBadGeometry)
	}
	if a.g.level == 0 {
		return fmt.Errorf("raid %s: add %s: level 0 has no redundancy to rebuild from: %w", a.name, name, ErrBadGeometry)
	}
	if ok, err := a.reAdd(dev, name); ok || err != nil {
		return err
	}
	m := &member{dev: dev, name: name, uuid: newUUID()}
	// Journal entries a reused device may still carry must not mix with ours.
	if err := a.wipeJournal(m); err != nil {
		return fmt.Errorf("raid %s: add %s: %w", a.name, name, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, o := range append(append([]*member(nil), a.roles...), a.spares...) {
		if o != nil && o.name == name && o.st() != RoleFaulty {
			return fmt.Errorf("raid %s: add %s: already a member", a.name, name)
		}
	}
	a.spares = append(a.spares, m)
	if !a.startSpareLocked() {
		a.events++
		a.writeSuperblocksLocked()
	}
	return nil
}

// reAdd puts a device that was briefly absent back into its role when the
// write-intent bitmap covers what it missed: only the dirty regions are rebuilt. It
// reports false when dev is not such a member (AddMember then adds it as new).
func (a *Array) reAdd(dev blockdev.Device, name string) (bool, error) {
	if a.bm == nil {
		return false, nil
	}
	sb, err := ReadSuperblock(dev)
	if err != nil || sb.ArrayUUID != a.uuid || sb.Role == RoleSpare || sb.Role >= uint32(a.g.n) {
		return false, nil //nolint:nilerr // no superblock of ours: a new member
	}
	r := int(sb.Role)
	a.mu.Lock()
	cur := a.roles[r]
	match := (cur == nil && a.ghosts[r] == sb.DeviceUUID) || (cur != nil && cur.st() == RoleFaulty && cur.uuid == sb.DeviceUUID)
	a.mu.Unlock()
	if !match {
		return false, nil
	}
	a.rb.mu.Lock()
	busy := a.rb.active
	a.rb.mu.Unlock()
	if busy || a.ctx == nil || a.readOnly || a.failed.Load() {
		return true, fmt.Errorf("raid %s: re-add %s: a rebuild is running or the array cannot rebuild now; add it when it is done", a.name, name)
	}
	m := &member{dev: dev, name: name, uuid: sb.DeviceUUID, flags: sb.Roles[r].Flags & FlagWriteMostly}
	m.reAdd.Store(true)
	if err := a.wipeJournal(m); err != nil {
		return true, fmt.Errorf("raid %s: re-add %s: %w", a.name, name, err)
	}
	dirty := a.bm.dirtyCount() // bm.mu is never taken inside a.mu (see Status)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.roles[r] != cur {
		return true, fmt.Errorf("raid %s: re-add %s: role %d changed meanwhile", a.name, name, r)
	}
	if cur != nil {
		m.flags = cur.flags & FlagWriteMostly
	}
	m.state.Store(uint32(RoleRebuilding))
	a.roles[r] = m
	a.ghosts[r] = UUID{}
	a.events++
	a.writeSuperblocksLocked()
	a.log.Info("raid member re-added: rebuilding the regions the bitmap marks dirty", "array", a.name, "member", name, "role", r, "regions", dirty)
	a.startRebuildLocked(r, m)
	return true, nil
}

// ReplaceMember rebuilds a copy of the member named old onto dev while old keeps
// serving; when the copy is complete old is marked faulty and removed.
func (a *Array) ReplaceMember(old string, dev blockdev.Device, name string) error {
	a.mu.Lock()
	r := -1
	for i, m := range a.roles {
		if m != nil && m.name == old {
			r = i
		}
	}
	a.mu.Unlock()
	if r < 0 {
		return fmt.Errorf("raid %s: replace %s: not a member", a.name, old)
	}
	// Simple and safe: build the new member from the others while old still serves, by
	// adding it as a spare and failing old once the array is healthy enough.
	if err := a.AddMember(dev, name); err != nil {
		return err
	}
	a.mu.Lock()
	ok := a.survivesLocked(r)
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("raid %s: replace %s: added %s as a spare, but failing %s now would lose data: %w", a.name, old, name, old, ErrTolerance)
	}
	return a.FailMember(old, false)
}

// startSpareLocked puts a spare into a missing or faulty role and starts its rebuild.
func (a *Array) startSpareLocked() bool {
	if len(a.spares) == 0 || a.failed.Load() || a.readOnly || a.ctx == nil {
		return false
	}
	a.rb.mu.Lock()
	busy := a.rb.active
	a.rb.mu.Unlock()
	if busy {
		return false
	}
	for r, m := range a.roles {
		if m != nil && m.st() != RoleFaulty {
			continue
		}
		sp := a.spares[0]
		a.spares = a.spares[1:]
		sp.state.Store(uint32(RoleRebuilding))
		sp.recovered.Store(0)
		a.roles[r] = sp
		a.ghosts[r] = UUID{}
		a.events++
		a.writeSuperblocksLocked()
		a.startRebuildLocked(r, sp)
		return true
	}
	return false
}

// startRebuildLocked rebuilds role r onto m in the background.
func (a *Array) startRebuildLocked(r int, m *member) {
	a.rb.mu.Lock()
	a.rb.active, a.rb.role, a.rb.member, a.rb.done, a.rb.total = true, r, m.name, 0, a.g.dataSize
	a.rb.started, a.rb.err, a.rb.doneCh = time.Now(), nil, make(chan struct{})
	ch := a.rb.doneCh
	a.rb.mu.Unlock()
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		err := a.rebuild(a.ctx, r, m)
		a.rb.mu.Lock()
		a.rb.active, a.rb.err = false, err
		a.rb.mu.Unlock()
		close(ch)
		if err != nil {
			a.log.Error("raid rebuild stopped", "array", a.name, "member", m.name, "err", err)
			return
		}
		a.mu.Lock()
		a.startSpareLocked()
		a.mu.Unlock()
	}()
}

// WaitRebuild waits for the running rebuild (if any) and returns its error.
func (a *Array) WaitRebuild(ctx context.Context) error {
	a.rb.mu.Lock()
	ch, active := a.rb.doneCh, a.rb.active
	a.rb.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return ctx.Err()
	}
	a.rb.mu.Lock()
	defer a.rb.mu.Unlock()
	_ = active
	return a.rb.err
}

// rebuild writes role r's data onto m chunk by chunk, each under its stripe lock, at a
// speed between MinSpeed (while foreground I/O runs) and MaxSpeed.
func (a *Array) rebuild(ctx context.Context, r int, m *member) error {
	// Entries journaled before m joined do not include it: make them durable first.
	if a.journaled() {
		a.recycleJournal()
	}
	c := a.g.chunk
	buf := make([]byte, c)
	groups, w := 1, 1
	if a.g.level == 1 || a.g.level == 10 {
		groups, w = a.g.mirrorGroups()
	}
	// The member must carry the bitmap's dirty bits once it is active: after a
	// crash the bitmap is read from the active members.
	if a.bm != nil {
		a.bm.mu.Lock()
		bad := a.persistBitmapLocked()
		a.bm.mu.Unlock()
		for _, f := range bad {
			a.failMember(f.r, f.m, f.err)
		}
	}
	// A re-added member only misses the regions the bitmap marks dirty.
	partial := a.bm != nil && m.reAdd.Load()
	for moff := int64(0); moff < a.g.dataSize; moff += c {
		if err := ctx.Err(); err != nil {
			return err
		}
		if partial && !a.bm.dirty(moff) {
			m.recovered.Store(moff + c)
			a.rb.mu.Lock()
			a.rb.done = moff + c
			a.rb.mu.Unlock()
			continue
		}
		if a.failed.Load() {
			return ErrFailed
		}
		if m.st() != RoleRebuilding {
			return errors.New("member left the array during rebuild")
		}
		t0 := time.Now()
		var err error
		if a.g.parity() > 0 {
			err = a.rebuildStripe(r, m, moff/c, buf)
		} else {
			err = a.rebuildMirror(r, m, moff, (moff/c)*int64(groups)+int64(r/w), buf)
		}
		if err != nil {
			return err
		}
		m.recovered.Store(moff + c)
		a.rb.mu.Lock()
		a.rb.done = moff + c
		a.rb.mu.Unlock()
		a.throttle(c, time.Since(t0))
	}
	if err := m.dev.Flush(); err != nil {
		a.failMember(r, m, err)
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.roles[r] != m || m.st() != RoleRebuilding {
		return errors.New("member left the array during rebuild")
	}
	m.state.Store(uint32(RoleActive))
	m.reAdd.Store(false)
	a.events++
	a.writeSuperblocksLocked()
	a.log.Info("raid rebuild complete", "array", a.name, "member", m.name, "role", r)
	return nil
}

func (a *Array) rebuildStripe(r int, m *member, s int64, buf []byte) error {
	l := a.plock(s)
	l.Lock()
	defer l.Unlock()
	shards := a.newShards(a.g.chunk)
	need := make([]bool, len(shards))
	jr := -1
	for j := range shards {
		if a.g.role(s, j) == r {
			jr = j
		}
	}
	need[jr] = true
	if err := a.loadShards(s, 0, a.g.chunk, shards, need); err != nil {
		return err
	}
	if err := a.writeMember(r, m, shards[jr], s*a.g.chunk); err != nil {
		return err
	}
	if a.cow != nil {
		return a.rebuildTags(r, m, s)
	}
	return nil
}

func (a *Array) rebuildMirror(r int, m *member, moff, lockKey int64, buf []byte) error {
	l := a.lock(lockKey)
	l.Lock()
	defer l.Unlock()
	_, w := a.g.mirrorGroups()
	grp := r / w
	roles := a.snapshot()
	for i := grp * w; i < grp*w+w; i++ {
		if i != r && readable(roles[i], moff, a.g.chunk) && a.readMember(i, roles[i], buf, moff) == nil {
			return a.writeMember(r, m, buf, moff)
		}
	}
	return fmt.Errorf("no readable copy at %d: %w", moff, ErrFailed)
}

// throttle sleeps so the rebuild runs at MaxSpeed when idle and MinSpeed when
// foreground I/O happened in the last 100 ms.
func (a *Array) throttle(n int64, spent time.Duration) {
	speed := a.maxSpeed.Load()
	if lo := a.minSpeed.Load(); time.Since(time.Unix(0, a.lastIO.Load())) < 100*time.Millisecond && lo > 0 {
		speed = lo
	}
	if speed <= 0 {
		return
	}
	want := time.Duration(float64(n) / float64(speed) * float64(time.Second))
	if want > spent {
		select {
		case <-time.After(want - spent):
		case <-a.ctx.Done():
		}
	}
}
