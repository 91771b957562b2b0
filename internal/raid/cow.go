package raid

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"slices"
	"sync"

	"github.com/zeebo/xxh3"
)

// Copy-on-write full stripes (PolicyCoW, docs/decisions/2026-12-03-raid-cow-full-stripes.md).
//
// Each member's data area holds phys physical stripes: the logical stripes of the
// array plus spare ones. fwd maps a logical stripe to the physical stripe that holds
// it. A full-stripe write goes to a free physical stripe, with no journal copy, and
// every member gets a tag for that stripe in its tag area: the logical stripe, a
// sequence number and a hash (XXH3-64) of the member's own shard. The old home stays
// untouched until a flush has made the new one durable ("settled"); only then is it
// free again. Partial-stripe writes keep the journal and write in place.
//
// At assembly the tags tell where each logical stripe lives: its tag with the highest
// sequence number, unless that stripe was not yet settled at the crash (its tag has
// no settled flag) and one of its shards on a present member does not match the hash
// in that member's tag: then the write never became durable and the previous home,
// which was settled before the write began, holds the stripe whole. A stripe is thus
// never half old and half new, which is what closes the write hole.
//
// Invariants the code keeps:
//   - a logical stripe has at most one unsettled home: a second full-stripe write,
//     or any in-place write, to a stripe whose home is unsettled settles first;
//   - a home is written in place only once its tag carries the settled flag, and
//     the journal flush before every in-place write makes that flag durable, so a
//     shard hash is only checked while it still describes the shard;
//   - old homes become free only after the flush that settled their successor.

const (
	cowTagSize = 32
	// cowTagMagic starts every tag ("RTG1").
	cowTagMagic = 0x31475452

	tagSettled uint32 = 1 << 0
	tagPresent uint32 = 1 << 31 // in memory only: the slot has a tag
)

// Physical stripe states.
const (
	useFree uint8 = iota
	useAlloc
	useHome
	useOld // previous home of an unsettled stripe
)

// cowTag is what a tag slot holds (flags 0: no tag).
type cowTag struct {
	seq   uint64
	owner uint32
	flags uint32
}

type cowState struct {
	tagOff  int64
	tpb     int64 // tags per block
	phys    int64
	logical int64

	mu        sync.Mutex
	fwd       []uint32            // logical stripe → physical stripe
	use       []uint8             // by physical stripe
	img       []cowTag            // by physical stripe: the tag every member should hold
	sums      map[uint32][]uint64 // unsettled tags: each role's shard hash
	unsettled map[uint32]uint32   // unsettled home → its old home
	pending   []uint32            // homes written since the last settle took its batch
	nfree     int64
	cursor    int64
	seq       uint64
	loaded    []cowTag // at assembly: the tags found, until finishCow

	settleMu sync.Mutex       // one settle at a time
	plocks   [1024]sync.Mutex // physical stripes
	tlocks   [1024]sync.Mutex // tag blocks, per member
}

// cowSpare is the number of spare physical stripes of an array with phys of them:
// 1/64 of the space, at least 64, and at most a quarter for very small arrays.
func cowSpare(phys int64) int64 {
	return min(max(64, phys/64), phys/4)
}

// cowTagBytes is the size of the tag area for phys stripes with block size bs.
func cowTagBytes(phys int64, bs int) int64 {
	tpb := int64(bs / cowTagSize)
	return (phys + tpb - 1) / tpb * int64(bs)
}

func newCowState(tagOff, phys, spare int64, bs int) *cowState {
	c := &cowState{tagOff: tagOff, tpb: int64(bs / cowTagSize), phys: phys, logical: phys - spare,
		fwd: make([]uint32, phys-spare), use: make([]uint8, phys), img: make([]cowTag, phys),
		sums: map[uint32][]uint64{}, unsettled: map[uint32]uint32{}}
	return c
}

// identity sets up a new array's map: logical stripe s at physical s, spares free.
func (c *cowState) identity() {
	for s := range c.fwd {
		c.fwd[s] = uint32(s)
		c.use[s] = useHome
		c.img[s] = cowTag{owner: uint32(s), flags: tagPresent | tagSettled}
	}
	c.nfree = c.phys - c.logical
}

func (a *Array) encodeTag(b []byte, t cowTag, sum uint64) {
	le := binary.LittleEndian
	clear(b[:cowTagSize])
	if t.flags&tagPresent == 0 {
		return
	}
	le.PutUint32(b[0:], cowTagMagic)
	le.PutUint32(b[4:], t.flags&^tagPresent)
	le.PutUint64(b[8:], t.seq)
	le.PutUint32(b[16:], t.owner)
	le.PutUint64(b[20:], sum)
	le.PutUint32(b[28:], crc32.Update(crc32.Checksum(a.uuid[:], castagnoli), castagnoli, b[:28]))
}

// decodeTag parses a tag slot; ok is false for an empty, foreign or corrupt slot.
func (a *Array) decodeTag(b []byte) (t cowTag, sum uint64, ok bool) {
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != cowTagMagic || le.Uint32(b[28:]) != crc32.Update(crc32.Checksum(a.uuid[:], castagnoli), castagnoli, b[:28]) {
		return t, 0, false
	}
	return cowTag{seq: le.Uint64(b[8:]), owner: le.Uint32(b[16:]), flags: le.Uint32(b[4:]) | tagPresent}, le.Uint64(b[20:]), true
}

// writeTagBlocks writes tag blocks blks (sorted, unique) of role r's member from the
// image. Each block is built under its lock from the image as it is then, so the last
// write of a block always carries every change made before it.
func (a *Array) writeTagBlocks(r int, m *member, blks []int64) error {
	c := a.cow
	bs := int64(a.g.bs)
	buf := make([]byte, bs)
	for _, blk := range blks {
		l := &c.tlocks[uint64(blk*MaxMembers+int64(r))%uint64(len(c.tlocks))]
		l.Lock()
		c.mu.Lock()
		for i := int64(0); i < c.tpb; i++ {
			f := blk*c.tpb + i
			var t cowTag
			var sum uint64
			if f < c.phys {
				t = c.img[f]
				if cs := c.sums[uint32(f)]; cs != nil {
					sum = cs[r]
				}
			}
			a.encodeTag(buf[i*cowTagSize:], t, sum)
		}
		c.mu.Unlock()
		_, err := m.dev.WriteAt(buf, c.tagOff+blk*bs)
		l.Unlock()
		if err != nil {
			a.failMember(r, m, fmt.Errorf("write tags: %w", err))
			return err
		}
	}
	return nil
}

// tagBlocks returns the sorted, unique tag blocks of physical stripes fs.
func (c *cowState) tagBlocks(fs []uint32) []int64 {
	blks := make([]int64, 0, len(fs))
	for _, f := range fs {
		blks = append(blks, int64(f)/c.tpb)
	}
	slices.Sort(blks)
	return slices.Compact(blks)
}

// writeTagsAll writes the tag blocks of physical stripes fs to every writable member.
func (a *Array) writeTagsAll(fs []uint32) {
	if len(fs) == 0 {
		return
	}
	blks := a.cow.tagBlocks(fs)
	var wg sync.WaitGroup
	for r, m := range a.snapshot() {
		if writable(m) {
			wg.Add(1)
			go func() { defer wg.Done(); _ = a.writeTagBlocks(r, m, blks) }()
		}
	}
	wg.Wait()
}

// plock is the lock of physical stripe f: rebuild and scrub take it alone, writers
// after their logical stripe locks. Without CoW physical and logical stripes are the
// same and so are their locks.
func (a *Array) plock(f int64) *sync.Mutex {
	if a.cow == nil {
		return a.lock(f)
	}
	return &a.cow.plocks[uint64(f)%uint64(len(a.cow.plocks))]
}

// home returns the physical stripe of logical stripe s (the caller holds s's lock).
func (a *Array) home(s int64) int64 {
	if a.cow == nil {
		return s
	}
	return int64(a.cow.fwd[s])
}

// settle flushes every member and then frees the old homes of the stripes written
// before the flush began, and marks those stripes' tags settled.
func (a *Array) settle() {
	c := a.cow
	c.settleMu.Lock()
	defer c.settleMu.Unlock()
	c.mu.Lock()
	batch := c.pending
	c.pending = nil
	c.mu.Unlock()
	a.flushAll()
	if a.failed.Load() || len(batch) == 0 {
		return
	}
	changed := make([]uint32, 0, 2*len(batch))
	c.mu.Lock()
	for _, f := range batch {
		old, ok := c.unsettled[f]
		if !ok {
			continue
		}
		delete(c.unsettled, f)
		delete(c.sums, f)
		c.img[f].flags |= tagSettled
		changed = append(changed, f)
		if c.use[old] == useOld {
			c.use[old] = useFree
			c.img[old] = cowTag{}
			c.nfree++
			changed = append(changed, old)
		}
	}
	c.mu.Unlock()
	a.writeTagsAll(changed)
}

// inPlace prepares physical stripe f (a home) for an in-place write and returns the
// sequence number of its tag, which its journal entries carry: replay applies an
// entry only while that tag still names the stripe's home (the caller holds f's lock).
func (a *Array) inPlace(f int64) uint64 {
	c := a.cow
	c.mu.Lock()
	_, unsettled := c.unsettled[uint32(f)]
	c.mu.Unlock()
	if unsettled {
		a.settle()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.img[f].seq
}

// alloc takes a free physical stripe, next after the last one taken, so that a
// sequential write lands in consecutive stripes; ok is false when none is free.
func (c *cowState) alloc() (f int64, ok bool) {
	if c.nfree == 0 {
		return 0, false
	}
	for i := int64(0); i < c.phys; i++ {
		f := (c.cursor + i) % c.phys
		if c.use[f] == useFree {
			c.use[f] = useAlloc
			c.nfree--
			c.cursor = f + 1
			return f, true
		}
	}
	return 0, false
}

// allocHomes takes a free physical stripe for each of n full-stripe writes, settling
// once if there are not enough; it returns fewer when even then there are not.
func (a *Array) allocHomes(n int) []int64 {
	c := a.cow
	var fs []int64
	for attempt := 0; attempt < 2 && len(fs) < n; attempt++ {
		if attempt > 0 {
			a.settle()
		}
		c.mu.Lock()
		for len(fs) < n {
			f, ok := c.alloc()
			if !ok {
				break
			}
			fs = append(fs, f)
		}
		c.mu.Unlock()
	}
	return fs
}

// freeAlloc returns unused allocations.
func (c *cowState) freeAlloc(fs []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range fs {
		if c.use[f] == useAlloc {
			c.use[f] = useFree
			c.nfree++
		}
	}
}

// putCow writes full stripes to their new physical homes (phys) with their tags,
// and then points the map of their logical stripes at them. Each stripe is encoded,
// checksummed and written to every member by one goroutine, while its shards are
// still in the CPU cache: on a machine whose memory bandwidth is the limit that is
// much faster than encoding every stripe of a request first and then writing each
// member's shards.
func (a *Array) putCow(p []byte, off int64, pieces []piece, phys, logical []int64) error {
	c := a.cow
	n, k, pm := a.g.n, a.g.dataDisks(), a.g.parity()
	w := a.g.chunk
	roles := a.snapshot()
	sums := make([][]uint64, len(pieces))
	errs := make([]error, len(pieces))
	par := runtime.GOMAXPROCS(0) // as many stripes at a time (parallel)
	parallel(len(pieces), func(i int) {
		pc, f := pieces[i], phys[i]
		shards := make([][]byte, k+pm)
		for j := 0; j < k; j++ {
			shards[j] = p[pc.lo+int64(j)*w : pc.lo+int64(j+1)*w]
		}
		pb, ok := a.parityPool.Get().([]byte)
		if !ok || int64(len(pb)) != int64(pm)*w {
			pb = make([]byte, int64(pm)*w)
		}
		defer a.parityPool.Put(pb) //nolint:staticcheck // a slice header is fine here
		for j := k; j < k+pm; j++ {
			shards[j] = pb[int64(j-k)*w : int64(j-k+1)*w]
		}
		if errs[i] = a.encode(shards); errs[i] != nil {
			return
		}
		sums[i] = make([]uint64, n)
		// Writes to one member file take its inode lock: the stripes
		// written at the same time start at members far apart.
		first := i * n / par
		for x := range n {
			j := (first + x) % n
			sh := shards[j]
			r := a.g.role(f, j)
			sums[i][r] = xxh3.Hash(sh)
			if m := roles[r]; writable(m) {
				_ = a.writeMember(r, m, sh, f*w) // a failure marks the member faulty
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		c.freeAlloc(phys) // nothing points at them: they are free again
		return fmt.Errorf("write at %d: %w", off, err)
	}
	if a.failed.Load() {
		return ErrFailed
	}
	fs := make([]uint32, len(pieces))
	c.mu.Lock()
	for i := range pieces {
		c.seq++
		fs[i] = uint32(phys[i])
		c.img[phys[i]] = cowTag{seq: c.seq, owner: uint32(logical[i]), flags: tagPresent}
		c.sums[uint32(phys[i])] = sums[i]
	}
	c.mu.Unlock()
	a.writeTagsAll(fs)
	if a.failed.Load() {
		return ErrFailed
	}
	c.mu.Lock()
	for i, f := range phys {
		s := logical[i]
		old := c.fwd[s]
		c.fwd[s] = uint32(f)
		c.use[f] = useHome
		c.use[old] = useOld
		c.unsettled[uint32(f)] = old
		c.pending = append(c.pending, uint32(f))
	}
	c.mu.Unlock()
	return nil
}

// writeParityCow writes the pieces of one batch of a RAID-5/6 CoW array (the caller
// holds their logical stripe locks): full stripes of a healthy array go to new
// homes, the rest are written in place through the journal.
func (a *Array) writeParityCow(p []byte, off int64, pieces []piece) error {
	c := a.cow
	sw := a.g.stripeWidth()
	full := make([]bool, len(pieces))
	nfull := 0
	healthy := a.allActive()
	for i, pc := range pieces {
		full[i] = healthy && (off+pc.lo)%sw == 0 && pc.hi-pc.lo == sw
		if full[i] {
			nfull++
		}
	}
	// At most one unsettled home per logical stripe, and none written in place.
	c.mu.Lock()
	need := false
	for _, pc := range pieces {
		if _, ok := c.unsettled[c.fwd[(off+pc.lo)/sw]]; ok {
			need = true
		}
	}
	c.mu.Unlock()
	if need {
		a.settle()
	}
	var homes []int64
	if nfull > 0 {
		homes = a.allocHomes(nfull)
	}
	phys := make([]int64, len(pieces))
	hi := 0
	for i, pc := range pieces {
		s := (off + pc.lo) / sw
		if full[i] && hi < len(homes) {
			phys[i] = homes[hi]
			hi++
		} else {
			full[i] = false
			phys[i] = a.home(s)
		}
	}
	keys := make([]int, 0, len(pieces))
	for _, f := range phys {
		keys = append(keys, int(uint64(f)%uint64(len(c.plocks))))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	for _, k := range keys {
		c.plocks[k].Lock()
	}
	defer func() {
		for _, k := range keys {
			c.plocks[k].Unlock()
		}
	}()
	for _, f := range phys {
		defer a.bitmapStartSpan(f*a.g.chunk, (f+1)*a.g.chunk)()
	}
	var cowP, placeP []piece
	var cowPhys, cowLogical, placePhys []int64
	for i, pc := range pieces {
		if full[i] {
			cowP, cowPhys = append(cowP, pc), append(cowPhys, phys[i])
			cowLogical = append(cowLogical, (off+pc.lo)/sw)
		} else {
			placeP, placePhys = append(placeP, pc), append(placePhys, phys[i])
		}
	}
	if len(placeP) > 0 {
		if err := a.putInPlace(p, off, placeP, placePhys); err != nil {
			c.freeAlloc(homes)
			return err
		}
	}
	if len(cowP) > 0 {
		return a.putCow(p, off, cowP, cowPhys, cowLogical)
	}
	return nil
}

// loadCow reads the tag areas of the active members at assembly and builds the map:
// each logical stripe goes to its newest home whose write is known to be whole.
// Homes found not whole, and tags of stripes that are no one's home, are cleared by
// finishCow once the journal has been replayed.
func (a *Array) loadCow() error {
	c := a.cow
	area := cowTagBytes(c.phys, a.g.bs)
	var active []int
	for r, m := range a.roles {
		if m != nil && m.st() == RoleActive {
			active = append(active, r)
		}
	}
	if len(active) == 0 {
		return nil
	}
	merged := make([]cowTag, c.phys)
	const window = 1 << 20
	buf := make([]byte, window)
	for _, r := range active {
		m := a.roles[r]
		for lo := int64(0); lo < area; lo += window {
			n := min(window, area-lo)
			if _, err := m.dev.ReadAt(buf[:n], c.tagOff+lo); err != nil {
				return fmt.Errorf("read tags of %s: %w", m.name, err)
			}
			for o := int64(0); o < n; o += cowTagSize {
				f := (lo + o) / cowTagSize
				if f >= c.phys {
					break
				}
				t, _, ok := a.decodeTag(buf[o : o+cowTagSize])
				if !ok || int64(t.owner) >= c.logical {
					continue
				}
				c.seq = max(c.seq, t.seq)
				cur := merged[f]
				switch {
				case cur.flags == 0 || t.seq > cur.seq:
					merged[f] = t
				case t.seq == cur.seq && t.owner == cur.owner:
					merged[f].flags |= t.flags & tagSettled
				}
			}
		}
	}
	// Candidates of each logical stripe, newest first.
	type cand struct {
		f   int64
		seq uint64
	}
	best := make([]cand, c.logical)
	second := make([]cand, c.logical)
	count := make([]int, c.logical)
	for f := int64(0); f < c.phys; f++ {
		t := merged[f]
		if t.flags == 0 {
			continue
		}
		s := t.owner
		count[s]++
		cd := cand{f, t.seq}
		switch {
		case count[s] == 1:
			best[s] = cd
		case t.seq > best[s].seq:
			second[s] = best[s]
			best[s] = cd
		case count[s] == 2 || t.seq > second[s].seq:
			second[s] = cd
		}
	}
	clear(c.use)
	c.img = make([]cowTag, c.phys)
	for s := int64(0); s < c.logical; s++ {
		if count[s] == 0 {
			return fmt.Errorf("raid %s: no member holds a tag for stripe %d: %w", a.name, s, ErrBadSuperblock)
		}
		home := best[s]
		t := merged[home.f]
		if count[s] > 1 && t.flags&tagSettled == 0 {
			whole, err := a.verifyCow(home.f, uint32(s), t.seq, active)
			if err != nil {
				return err
			}
			if !whole {
				a.log.Warn("raid: a full-stripe write was not whole at the crash; the stripe keeps its previous content", "array", a.name, "stripe", s)
				home = second[s]
			}
		}
		c.fwd[s] = uint32(home.f)
		c.use[home.f] = useHome
		// Everything on disk now is durable: every home is settled.
		c.img[home.f] = cowTag{seq: merged[home.f].seq, owner: uint32(s), flags: tagPresent | tagSettled}
	}
	c.nfree = 0
	for f := int64(0); f < c.phys; f++ {
		if c.use[f] == useFree {
			c.nfree++
		}
	}
	c.loaded = merged
	return nil
}

// verifyCow checks that every active member holds the tag (s, seq) for physical
// stripe f and that its shard matches the hash in it.
func (a *Array) verifyCow(f int64, s uint32, seq uint64, active []int) (bool, error) {
	c := a.cow
	bs := int64(a.g.bs)
	blk := make([]byte, bs)
	shard := make([]byte, a.g.chunk)
	slot := f % c.tpb * cowTagSize
	for _, r := range active {
		m := a.roles[r]
		if _, err := m.dev.ReadAt(blk, c.tagOff+f/c.tpb*bs); err != nil {
			return false, fmt.Errorf("read tags of %s: %w", m.name, err)
		}
		t, sum, ok := a.decodeTag(blk[slot : slot+cowTagSize])
		if !ok || t.owner != s || t.seq != seq {
			return false, nil
		}
		if _, err := m.dev.ReadAt(shard, a.g.dataOff+f*a.g.chunk); err != nil {
			return false, fmt.Errorf("read %s: %w", m.name, err)
		}
		if xxh3.Hash(shard) != sum {
			return false, nil
		}
	}
	return true, nil
}

// cowSeqAt is the sequence number of the tag of physical stripe f found at assembly
// (journal replay applies an entry only while it matches).
func (a *Array) cowSeqAt(f int64) (uint64, bool) {
	c := a.cow
	if f < 0 || f >= c.phys || c.use[f] != useHome {
		return 0, false
	}
	return c.img[f].seq, true
}

// finishCow writes the tags that changed at assembly (homes now settled, stale and
// torn tags cleared) to the members and flushes them.
func (a *Array) finishCow() error {
	c := a.cow
	var changed []uint32
	for f := int64(0); f < c.phys; f++ {
		if c.loaded[f] != c.img[f] {
			changed = append(changed, uint32(f))
			if c.use[f] == useFree && c.loaded[f].flags != 0 {
				// A member absent now may still hold this tag: resync it on re-add.
				a.bitmapStartSpan(f*a.g.chunk, (f+1)*a.g.chunk)()
			}
		}
	}
	c.loaded = nil
	if len(changed) == 0 {
		return nil
	}
	a.writeTagsAll(changed)
	a.flushAll()
	if a.failed.Load() {
		return ErrFailed
	}
	return nil
}

// createCow writes the tags of a new array: logical stripe s at physical s.
func (a *Array) createCow(m *member) error {
	c := a.cow
	area := cowTagBytes(c.phys, a.g.bs)
	const window = 1 << 20
	buf := make([]byte, window)
	for lo := int64(0); lo < area; lo += window {
		n := min(window, area-lo)
		clear(buf)
		for o := int64(0); o < n; o += cowTagSize {
			if f := (lo + o) / cowTagSize; f < c.phys {
				a.encodeTag(buf[o:], c.img[f], 0)
			}
		}
		if _, err := m.dev.WriteAt(buf[:n], c.tagOff+lo); err != nil {
			return fmt.Errorf("write tags of %s: %w", m.name, err)
		}
	}
	return nil
}

// rebuildTags writes the tag block of physical stripe f to a member being rebuilt
// (the caller holds f's lock).
func (a *Array) rebuildTags(r int, m *member, f int64) error {
	return a.writeTagBlocks(r, m, []int64{f / a.cow.tpb})
}

// cowFree reports whether physical stripe f is no one's home (its content means
// nothing: scrub skips it).
func (a *Array) cowFree(f int64) bool {
	c := a.cow
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.use[f] == useFree || c.use[f] == useAlloc
}
