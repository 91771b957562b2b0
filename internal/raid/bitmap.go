package raid

import (
	"fmt"
	"sync"
	"time"
)

// The write-intent bitmap (docs/formats/raid-superblock.md) has one bit per region of
// BitmapChunk bytes of the members' data areas, kept on every member. A bit is set and
// made durable on every member before the first write to its region; it is cleared
// only when every role is active, the region saw no write for a whole cleaner period,
// and a flush made its writes durable on every member. The set bits therefore cover
// every region where the members may disagree: after an unclean stop, RAID-1/10 (and
// RAID-5/6 without a journal) resync only them, and a member that was briefly absent
// is re-added with a rebuild of only them (bits are never cleared while a role is not
// active).

// bitmapPeriod is how long a region must go unwritten before its bit is cleared.
const bitmapPeriod = 5 * time.Second

// bitmapBytes is the size of the bitmap area new arrays get (32768 regions).
const bitmapBytes = 4096

type bitmap struct {
	off    int64 // member offset of the area
	size   int   // bytes of the area
	region int64 // member data bytes per bit
	n      int64 // bits in use

	mu       sync.Mutex
	mem      []byte  // set bits
	clearing []byte  // bits being cleared: still set on disk until the data is flushed
	touched  []byte  // regions written since the last cleaner pass
	inflight []int32 // writes in progress per region
	img      []byte  // the on-disk image, size bytes
}

func newBitmap(off int64, size int, region, dataSize int64) *bitmap {
	n := (dataSize + region - 1) / region
	nb := (n + 7) / 8
	return &bitmap{off: off, size: size, region: region, n: n, mem: make([]byte, nb),
		clearing: make([]byte, nb), touched: make([]byte, nb), inflight: make([]int32, n), img: make([]byte, size)}
}

func bitGet(b []byte, i int64) bool { return b[i/8]&(1<<(i%8)) != 0 }
func bitSet(b []byte, i int64)      { b[i/8] |= 1 << (i % 8) }
func bitClr(b []byte, i int64)      { b[i/8] &^= 1 << (i % 8) }

// dirty reports whether the region holding member data offset moff may differ
// between members.
func (bm *bitmap) dirty(moff int64) bool {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	i := moff / bm.region
	return bitGet(bm.mem, i) || bitGet(bm.clearing, i)
}

// dirtyCount is the number of set bits.
func (bm *bitmap) dirtyCount() int64 {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	var c int64
	for i := int64(0); i < bm.n; i++ {
		if bitGet(bm.mem, i) || bitGet(bm.clearing, i) {
			c++
		}
	}
	return c
}

// load ORs a member's on-disk bitmap into the in-memory one.
func (bm *bitmap) load(m *member) error {
	b := make([]byte, bm.size)
	if _, err := m.dev.ReadAt(b, bm.off); err != nil {
		return fmt.Errorf("read bitmap of %s: %w", m.name, err)
	}
	for i := range bm.mem {
		bm.mem[i] |= b[i]
	}
	if r := bm.n % 8; r != 0 {
		bm.mem[len(bm.mem)-1] &= byte(1<<r) - 1
	}
	return nil
}

// memberSpan is the span of member data offsets a write of n bytes at array offset
// off touches (the same on every member).
func (a *Array) memberSpan(off, n int64) (lo, hi int64) {
	row := a.g.chunk // RAID-1: the array is the member
	switch a.g.level {
	case 5, 6:
		row = a.g.stripeWidth()
	case 10:
		groups, _ := a.g.mirrorGroups()
		row = int64(groups) * a.g.chunk
	}
	return off / row * a.g.chunk, ((off+n-1)/row + 1) * a.g.chunk
}

type memberFailure struct {
	r   int
	m   *member
	err error
}

// bitmapStart marks the regions of a write of n bytes at off dirty, making new bits
// durable on every member before it returns; done must be called when the write ends.
func (a *Array) bitmapStart(off, n int64) (done func()) {
	if a.bm == nil || n == 0 {
		return func() {}
	}
	return a.bitmapStartSpan(a.memberSpan(off, n))
}

// bitmapStartSpan is bitmapStart for the member data span [lo, hi).
func (a *Array) bitmapStartSpan(lo, hi int64) (done func()) {
	bm := a.bm
	if bm == nil || hi <= lo {
		return func() {}
	}
	r0, r1 := lo/bm.region, min((hi-1)/bm.region, bm.n-1)
	bm.mu.Lock()
	fresh := false
	for i := r0; i <= r1; i++ {
		bm.inflight[i]++
		bitSet(bm.touched, i)
		if !bitGet(bm.mem, i) {
			bitSet(bm.mem, i)
			fresh = true
		}
	}
	var bad []memberFailure
	if fresh {
		bad = a.persistBitmapLocked()
	}
	bm.mu.Unlock()
	for _, f := range bad {
		a.failMember(f.r, f.m, f.err)
	}
	return func() {
		bm.mu.Lock()
		for i := r0; i <= r1; i++ {
			bm.inflight[i]--
		}
		bm.mu.Unlock()
	}
}

// persistBitmapLocked writes the bitmap (set and clearing bits) to every writable
// member and flushes them; the caller holds bm.mu and fails the members returned.
func (a *Array) persistBitmapLocked() []memberFailure {
	bm := a.bm
	clear(bm.img)
	for i := range bm.mem {
		bm.img[i] = bm.mem[i] | bm.clearing[i]
	}
	roles := a.snapshot()
	var mu sync.Mutex
	var bad []memberFailure
	var wg sync.WaitGroup
	for r, m := range roles {
		if !writable(m) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := m.dev.WriteAt(bm.img, bm.off)
			if err == nil {
				err = m.dev.Flush()
			}
			if err != nil {
				mu.Lock()
				bad = append(bad, memberFailure{r, m, fmt.Errorf("write bitmap: %w", err)})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return bad
}

// allActive reports whether every role holds an active member.
func (a *Array) allActive() bool {
	for _, m := range a.snapshot() {
		if m == nil || m.st() != RoleActive {
			return false
		}
	}
	return true
}

// cleanBitmap clears the bits of regions that saw no write since the last pass (all:
// of every region without a write in progress), once a flush made their writes
// durable on every member. Nothing is cleared unless every role is active.
func (a *Array) cleanBitmap(all bool) {
	bm := a.bm
	if bm == nil || a.readOnly || a.failed.Load() || !a.allActive() {
		return
	}
	bm.mu.Lock()
	var cand []int64
	for i := int64(0); i < bm.n; i++ {
		if bitGet(bm.mem, i) && bm.inflight[i] == 0 && (all || !bitGet(bm.touched, i)) {
			cand = append(cand, i)
			bitClr(bm.mem, i)
			bitSet(bm.clearing, i)
		}
	}
	clear(bm.touched)
	bm.mu.Unlock()
	if len(cand) == 0 {
		return
	}
	a.flushAll()
	bm.mu.Lock()
	// A member lost meanwhile may not have the writes durable: keep the bits.
	ok := a.allActive() && !a.failed.Load()
	for _, i := range cand {
		bitClr(bm.clearing, i)
		if !ok {
			bitSet(bm.mem, i)
		}
	}
	var bad []memberFailure
	if ok {
		bad = a.persistBitmapLocked()
	}
	bm.mu.Unlock()
	for _, f := range bad {
		a.failMember(f.r, f.m, f.err)
	}
}

// bitmapCleaner clears idle regions' bits every bitmapPeriod until the array stops.
func (a *Array) bitmapCleaner() {
	defer a.bg.Done()
	t := time.NewTicker(bitmapPeriod)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
			a.cleanBitmap(false)
		}
	}
}
