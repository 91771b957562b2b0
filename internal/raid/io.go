package raid

import (
	"crypto/subtle"
	"fmt"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// ReadAt reads from the array, reconstructing data of missing members.
func (a *Array) ReadAt(p []byte, off int64) (int, error) {
	if err := blockdev.CheckRange(a, off, int64(len(p))); err != nil {
		return 0, fmt.Errorf("raid %s: read: %w", a.name, err)
	}
	a.touch()
	done := 0
	for done < len(p) {
		if a.failed.Load() {
			return done, fmt.Errorf("raid %s: read at %d: %w", a.name, off+int64(done), ErrFailed)
		}
		var n int
		var err error
		switch a.g.level {
		case 1, 10:
			n, err = a.readMirror(p[done:], off+int64(done))
		default:
			n, err = a.readStriped(p[done:], off+int64(done))
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// WriteAt writes to the array; a member that fails is dropped and the write goes on
// degraded while the level tolerates it.
func (a *Array) WriteAt(p []byte, off int64) (int, error) {
	if err := blockdev.CheckRange(a, off, int64(len(p))); err != nil {
		return 0, fmt.Errorf("raid %s: write: %w", a.name, err)
	}
	if a.readOnly {
		return 0, fmt.Errorf("raid %s: write: %w", a.name, blockdev.ErrReadOnly)
	}
	a.touch()
	a.markDirty()
	if a.cow == nil { // CoW arrays mark the physical stripes they write
		defer a.bitmapStart(off, int64(len(p)))()
	}
	if a.g.parity() > 0 {
		if err := a.writeParity(p, off); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	done := 0
	for done < len(p) {
		if a.failed.Load() {
			return done, fmt.Errorf("raid %s: write at %d: %w", a.name, off+int64(done), ErrFailed)
		}
		var n int
		var err error
		switch a.g.level {
		case 0:
			n, err = a.writeRaid0(p[done:], off+int64(done))
		case 1, 10:
			n, err = a.writeMirror(p[done:], off+int64(done))
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// zeroes is a shared block of zeroes for Unmap and WriteZeroes.
var zeroes = make([]byte, 1<<20)

// Unmap makes a range read as zeroes. The array writes the zeroes (through the
// journal, keeping parity and mirrors consistent) rather than deallocating member
// space: it is an Unmapper so that a LUN on it offers UNMAP with LBPRZ honestly.
func (a *Array) Unmap(off, length int64) error { return a.WriteZeroes(off, length) }

// WriteZeroes zeroes a range through the ordinary write path.
func (a *Array) WriteZeroes(off, length int64) error {
	if err := blockdev.CheckRange(a, off, length); err != nil {
		return fmt.Errorf("raid %s: write zeroes: %w", a.name, err)
	}
	for length > 0 {
		n := min(length, int64(len(zeroes)))
		if _, err := a.WriteAt(zeroes[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// readMirror reads one chunk's worth from a mirror, preferring members that are not
// write-mostly, round robin among them.
func (a *Array) readMirror(p []byte, off int64) (int, error) {
	grp, moff, n := a.g.mirrorMap(off)
	n = min(n, int64(len(p)))
	_, w := a.g.mirrorGroups()
	roles := a.snapshot()
	for tries := 0; tries < w+1; tries++ {
		start := int(a.rr.Add(1))
		best := -1
		for pass := 0; pass < 2 && best < 0; pass++ {
			for i := 0; i < w; i++ {
				r := grp*w + (start+i)%w
				m := roles[r]
				if readable(m, moff, n) && (pass == 1 || m.flags&FlagWriteMostly == 0) {
					best = r
					break
				}
			}
		}
		if best < 0 {
			break
		}
		if err := a.readMember(best, roles[best], p[:n], moff); err == nil {
			return int(n), nil
		}
	}
	a.mu.Lock()
	a.checkFailedLocked()
	a.mu.Unlock()
	return 0, fmt.Errorf("raid %s: read at %d: no copy readable: %w", a.name, off, ErrFailed)
}

func (a *Array) writeMirror(p []byte, off int64) (int, error) {
	grp, moff, n := a.g.mirrorMap(off)
	n = min(n, int64(len(p)))
	_, w := a.g.mirrorGroups()
	l := a.lock(off / a.g.chunk)
	l.Lock()
	defer l.Unlock()
	roles := a.snapshot()
	ok := 0
	for r := grp * w; r < grp*w+w; r++ {
		if m := roles[r]; writable(m) {
			if a.writeMember(r, m, p[:n], moff) == nil {
				ok++
			}
		}
	}
	if ok == 0 {
		a.mu.Lock()
		a.checkFailedLocked()
		a.mu.Unlock()
		return 0, fmt.Errorf("raid %s: write at %d: no copy writable: %w", a.name, off, ErrFailed)
	}
	return int(n), nil
}

// stripeAt locates an array offset of RAID-0/5/6: stripe, data shard, offset in chunk.
func (a *Array) stripeAt(off int64) (s int64, j int, in int64) {
	sw := a.g.stripeWidth()
	s = off / sw
	j = int(off % sw / a.g.chunk)
	return s, j, off % a.g.chunk
}

func (a *Array) writeRaid0(p []byte, off int64) (int, error) {
	s, j, in := a.stripeAt(off)
	n := min(a.g.chunk-in, int64(len(p)))
	r := a.g.role(s, j)
	m := a.snapshot()[r]
	if !writable(m) {
		return 0, fmt.Errorf("raid %s: write at %d: %w", a.name, off, ErrFailed)
	}
	if err := a.writeMember(r, m, p[:n], s*a.g.chunk+in); err != nil {
		return 0, fmt.Errorf("%w: %w", err, ErrFailed)
	}
	return int(n), nil
}

// readStriped reads up to one chunk of RAID-0/5/6: directly when the member is there,
// else by reconstructing the stripe under its lock.
func (a *Array) readStriped(p []byte, off int64) (int, error) {
	s, j, in := a.stripeAt(off)
	n := min(a.g.chunk-in, int64(len(p)))
	if a.cow != nil {
		// The stripe lock keeps the stripe at its home (and the home from being
		// freed and reused) while it is read.
		l := a.lock(s)
		l.Lock()
		defer l.Unlock()
		s = a.home(s)
	}
	r := a.g.role(s, j)
	m := a.snapshot()[r]
	moff := s*a.g.chunk + in
	if readable(m, moff, n) && a.readMember(r, m, p[:n], moff) == nil {
		return int(n), nil
	}
	if a.g.level == 0 {
		a.mu.Lock()
		a.checkFailedLocked()
		a.mu.Unlock()
		return 0, fmt.Errorf("raid %s: read at %d: %w", a.name, off, ErrFailed)
	}
	if a.cow == nil {
		l := a.lock(s)
		l.Lock()
		defer l.Unlock()
	}
	shards := a.newShards(n)
	need := make([]bool, len(shards))
	need[j] = true
	if err := a.loadShards(s, in, n, shards, need); err != nil {
		return 0, fmt.Errorf("raid %s: read at %d: %w", a.name, off, err)
	}
	copy(p[:n], shards[j])
	return int(n), nil
}

func (a *Array) newShards(w int64) [][]byte {
	k, m := a.g.dataDisks(), a.g.parity()
	buf := make([]byte, int64(k+m)*w)
	shards := make([][]byte, k+m)
	for i := range shards {
		shards[i] = buf[int64(i)*w : int64(i+1)*w]
	}
	return shards
}

// loadShards fills the shards marked in need with the bytes [in, in+w) of each chunk of
// stripe s, reading them directly or reconstructing them from the others.
func (a *Array) loadShards(s, in, w int64, shards [][]byte, need []bool) error {
	moff := s*a.g.chunk + in
	for attempt := 0; attempt < a.g.n; attempt++ {
		if a.failed.Load() {
			return ErrFailed
		}
		roles := a.snapshot()
		direct := true
		for j, nd := range need {
			if !nd {
				continue
			}
			r := a.g.role(s, j)
			if !readable(roles[r], moff, w) || a.readMember(r, roles[r], shards[j], moff) != nil {
				direct = false
				break
			}
		}
		if direct {
			return nil
		}
		// Reconstruct from every available shard, in scratch buffers: shards that
		// are not needed may hold the caller's new data.
		tmp := a.newShards(w)
		have := make([]bool, len(shards))
		lost := 0
		for j := range shards {
			r := a.g.role(s, j)
			if readable(roles[r], moff, w) && a.readMember(r, roles[r], tmp[j], moff) == nil {
				have[j] = true
			} else {
				lost++
			}
		}
		if lost > a.g.parity() {
			continue // the failures were recorded; the check at the top decides
		}
		if err := a.reconstruct(tmp, have); err != nil {
			return err
		}
		for j, nd := range need {
			if nd {
				copy(shards[j], tmp[j])
			}
		}
		return nil
	}
	return ErrFailed
}

// reconstruct fills the shards not in have (at most parity() of them).
func (a *Array) reconstruct(shards [][]byte, have []bool) error {
	if a.g.parity() == 1 {
		miss := -1
		for j, h := range have {
			if !h {
				miss = j
			}
		}
		if miss < 0 {
			return nil
		}
		clear(shards[miss])
		for j := range shards {
			if j != miss {
				subtle.XORBytes(shards[miss], shards[miss], shards[j])
			}
		}
		return nil
	}
	tmp := make([][]byte, len(shards))
	for j := range shards {
		if have[j] {
			tmp[j] = shards[j]
		} else {
			tmp[j] = shards[j][:0]
		}
	}
	if err := a.enc.Reconstruct(tmp); err != nil {
		return fmt.Errorf("raid %s: reconstruct: %w", a.name, err)
	}
	for j := range shards {
		if !have[j] {
			copy(shards[j], tmp[j])
		}
	}
	return nil
}

// encode computes the parity shards from the data shards.
func (a *Array) encode(shards [][]byte) error {
	k := a.g.dataDisks()
	if a.g.parity() == 1 {
		subtle.XORBytes(shards[k], shards[0], shards[1])
		for j := 2; j < k; j++ {
			subtle.XORBytes(shards[k], shards[k], shards[j])
		}
		return nil
	}
	return a.enc.Encode(shards)
}
