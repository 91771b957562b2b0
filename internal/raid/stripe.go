package raid

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
)

// stripeUpdate is the new content of rows [in, in+w) of the chunks of stripe s: all
// shards (data, then parity), and which of them changed.
type stripeUpdate struct {
	s, in, w int64
	shards   [][]byte
	touched  []bool
	pooled   []byte // parity buffer of a full stripe, back to a.parityPool when done
	// homeSeq is the tag sequence number of the stripe's home on a CoW array,
	// recorded in its journal entries (see Array.inPlace).
	homeSeq uint64
}

// piece is the part [lo, hi) of a write's buffer that falls in one stripe.
type piece struct{ lo, hi int64 }

// maxBatch is the most stripes one request journals and writes together (at most
// half the journal slots). Batches used to fail the model test; the cause was the
// replay of old entries after a member joined (see journal.durableSeq), which
// batches only made more likely.
const maxBatch = 16

// writeParity writes p at off on RAID-5/6. The request is cut into stripes; up to
// maxBatch of them are locked (in lock order), computed in parallel, journaled with one
// flush per member, and written in place together.
func (a *Array) writeParity(p []byte, off int64) error {
	sw := a.g.stripeWidth()
	var pieces []piece
	for lo := int64(0); lo < int64(len(p)); {
		hi := min(int64(len(p)), (off+lo)/sw*sw+sw-off)
		pieces = append(pieces, piece{lo, hi})
		lo = hi
	}
	batch := max(1, min(maxBatch, a.jSlots/2))
	for len(pieces) > 0 {
		n := min(batch, len(pieces))
		cur := pieces[:n]
		pieces = pieces[n:]
		var keys []int
		for _, pc := range cur {
			keys = append(keys, a.lockIndex((off+pc.lo)/sw))
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		for _, k := range keys {
			a.locks[k].Lock()
		}
		var err error
		if a.cow != nil {
			err = a.writeParityCow(p, off, cur)
		} else {
			phys := make([]int64, n)
			for i, pc := range cur {
				phys[i] = (off + pc.lo) / sw
			}
			err = a.putInPlace(p, off, cur, phys)
		}
		for _, k := range keys {
			a.locks[k].Unlock()
		}
		if err != nil {
			return fmt.Errorf("raid %s: write at %d: %w", a.name, off, err)
		}
	}
	return nil
}

// putInPlace computes the updates of pieces (the parts of p at off that fall in
// physical stripes phys; the caller holds their locks) in parallel and writes them in
// place, through the journal when the array has one.
func (a *Array) putInPlace(p []byte, off int64, pieces []piece, phys []int64) error {
	us := make([]stripeUpdate, len(pieces))
	errs := make([]error, len(pieces))
	parallel(len(pieces), func(i int) {
		pc := pieces[i]
		us[i], errs[i] = a.prepareStripe(p[pc.lo:pc.hi], off+pc.lo, phys[i])
	})
	err := errors.Join(errs...)
	if err == nil {
		err = a.putStripes(us)
	}
	for _, u := range us {
		if u.pooled != nil {
			a.parityPool.Put(u.pooled) //nolint:staticcheck // a slice header is fine here
		}
	}
	return err
}

func (a *Array) lockIndex(key int64) int { return int(uint64(key) % uint64(len(a.locks))) }

// prepareStripe computes the update for the part of p that falls in one stripe, to
// be written at physical stripe s (the caller holds the stripe's locks). A full
// stripe is encoded straight from p; a partial one reads the rest of the affected
// rows (reconstruct-write), so a degraded stripe is handled the same way.
func (a *Array) prepareStripe(p []byte, off, s int64) (stripeUpdate, error) {
	sw, c := a.g.stripeWidth(), a.g.chunk
	so := off % sw
	n := int64(len(p))
	k, pm := a.g.dataDisks(), a.g.parity()
	var in, w int64
	switch {
	case so == 0 && n == sw:
		in, w = 0, c
	case so/c == (so+n-1)/c:
		in, w = so%c, n
	default:
		in, w = 0, c
	}
	u := stripeUpdate{s: s, in: in, w: w, shards: make([][]byte, k+pm), touched: make([]bool, k+pm)}
	need := make([]bool, k+pm)
	anyNeed := false
	for j := 0; j < k; j++ {
		lo, hi := int64(j)*c+in, int64(j)*c+in+w // this shard's rows, stripe coordinates
		if so <= lo && so+n >= hi {
			u.shards[j] = p[lo-so : hi-so]
			u.touched[j] = true
			continue
		}
		need[j] = true
		anyNeed = true
	}
	nbuf := 0
	for j := range need {
		if need[j] || j >= k {
			nbuf++
		}
	}
	var scratch []byte
	if !anyNeed && w == c {
		if b, ok := a.parityPool.Get().([]byte); ok && int64(len(b)) == int64(nbuf)*w {
			scratch = b
		} else {
			scratch = make([]byte, int64(nbuf)*w)
		}
		u.pooled = scratch
	} else {
		scratch = make([]byte, int64(nbuf)*w)
	}
	for j := range u.shards {
		if need[j] || j >= k {
			u.shards[j], scratch = scratch[:w:w], scratch[w:]
		}
	}
	for j := k; j < k+pm; j++ {
		u.touched[j] = true
	}
	if anyNeed {
		if err := a.loadShards(s, in, w, u.shards, need); err != nil {
			return u, fmt.Errorf("read stripe %d: %w", s, err)
		}
		for j := 0; j < k; j++ {
			if !need[j] {
				continue
			}
			lo, hi := max(so, int64(j)*c+in), min(so+n, int64(j)*c+in+w)
			if lo < hi {
				copy(u.shards[j][lo-int64(j)*c-in:], p[lo-so:hi-so])
				u.touched[j] = true
			}
		}
	}
	return u, a.encode(u.shards)
}

// putStripe writes one stripe update (the caller holds the stripe lock).
func (a *Array) putStripe(s, in, w int64, shards [][]byte, touched []bool) error {
	return a.putStripes([]stripeUpdate{{s: s, in: in, w: w, shards: shards, touched: touched}})
}

// putStripes writes stripe updates in place, through the journal when the array has
// one; the members are written in parallel.
func (a *Array) putStripes(us []stripeUpdate) error {
	roles := a.snapshot()
	if a.cow != nil {
		for i := range us {
			us[i].homeSeq = a.inPlace(us[i].s)
		}
	}
	if a.journaled() {
		release, err := a.journalBatch(us, roles)
		if err != nil {
			return err
		}
		defer release()
	}
	var wg sync.WaitGroup
	for r, m := range roles {
		if !writable(m) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, u := range us {
				for j, t := range u.touched {
					if t && a.g.role(u.s, j) == r {
						if a.writeMember(r, m, u.shards[j], u.s*a.g.chunk+u.in) != nil {
							return // recorded; the member is faulty now
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	if a.failed.Load() {
		return ErrFailed
	}
	return nil
}

// parallel runs fn(0..n-1), at most GOMAXPROCS at a time, and waits for all.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}
