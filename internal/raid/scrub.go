package raid

import (
	"bytes"
	"context"
	"fmt"
)

// ScrubResult is what Check found.
type ScrubResult struct {
	Mismatches int64 // stripes or mirror chunks whose redundancy disagreed
	Repaired   int64
	Skipped    int64 // rows that could not be checked (a member missing)
	// Located counts RAID-6 mismatches pinned on one member and fixed there.
	Located int64
}

// Check reads the whole array and counts parity or mirror mismatches; with repair it
// fixes them: RAID-6 finds the one bad shard from P and Q and rewrites it; RAID-5
// cannot tell which shard is wrong and rewrites parity (as md does); mirrors take
// the majority copy, or the first copy that is not write-mostly when there is none.
func (a *Array) Check(ctx context.Context, repair bool) (ScrubResult, error) {
	if repair && a.readOnly {
		return ScrubResult{}, fmt.Errorf("raid %s: repair: array is read-only", a.name)
	}
	return a.scrub(ctx, repair, false, nil)
}

// scrub checks (and repairs) every row, or with dirtyOnly only the rows the bitmap
// marks dirty.
func (a *Array) scrub(ctx context.Context, repair, dirtyOnly bool, progress func(done, total int64)) (ScrubResult, error) {
	var res ScrubResult
	c := a.g.chunk
	rows := a.g.dataSize / c
	for row := int64(0); row < rows; row++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if a.failed.Load() {
			return res, fmt.Errorf("raid %s: scrub: %w", a.name, ErrFailed)
		}
		if dirtyOnly && a.bm != nil && !a.bm.dirty(row*c) {
			continue
		}
		var err error
		switch a.g.level {
		case 0:
			return res, nil
		case 1, 10:
			groups, _ := a.g.mirrorGroups()
			for g := 0; g < groups && err == nil; g++ {
				err = a.scrubMirror(row, g, repair, &res)
			}
		default:
			err = a.scrubStripe(row, repair, &res)
		}
		if err != nil {
			return res, err
		}
		if progress != nil {
			progress(row+1, rows)
		}
	}
	if repair && res.Repaired > 0 {
		a.flushAll()
	}
	return res, nil
}

func (a *Array) scrubStripe(s int64, repair bool, res *ScrubResult) error {
	c := a.g.chunk
	l := a.plock(s)
	l.Lock()
	defer l.Unlock()
	if a.cow != nil && a.cowFree(s) {
		return nil // a spare stripe: what it holds means nothing
	}
	roles := a.snapshot()
	shards := a.newShards(c)
	moff := s * c
	for j := range shards {
		r := a.g.role(s, j)
		if !readable(roles[r], moff, c) {
			res.Skipped++
			return nil
		}
		if err := a.readMember(r, roles[r], shards[j], moff); err != nil {
			res.Skipped++
			return nil
		}
	}
	k := a.g.dataDisks()
	want := a.newShards(c)
	for j := 0; j < k; j++ {
		copy(want[j], shards[j])
	}
	if err := a.encode(want); err != nil {
		return err
	}
	ok := true
	for j := k; j < len(shards); j++ {
		ok = ok && bytes.Equal(want[j], shards[j])
	}
	if ok {
		return nil
	}
	res.Mismatches++
	if !repair {
		return nil
	}
	fixed := want // default: keep data, rewrite parity
	touched := make([]bool, len(shards))
	for j := k; j < len(shards); j++ {
		touched[j] = true
	}
	defer a.bitmapStartSpan(moff, moff+c)()
	if a.g.parity() == 2 {
		if bad, cand := a.locateBad(shards); bad >= 0 {
			fixed = cand
			clear(touched)
			touched[bad] = true
			res.Located++
		}
	}
	if err := a.putStripe(s, 0, c, fixed, touched); err != nil {
		return err
	}
	res.Repaired++
	return nil
}

// locateBad finds the single shard of a RAID-6 stripe whose erasure makes the stripe
// consistent, and returns it with the corrected shards; -1 when there is none or more.
func (a *Array) locateBad(shards [][]byte) (int, [][]byte) {
	c := int64(len(shards[0]))
	found, var_ := -1, [][]byte(nil)
	for bad := range shards {
		cand := a.newShards(c)
		have := make([]bool, len(shards))
		for j := range shards {
			if j != bad {
				copy(cand[j], shards[j])
				have[j] = true
			}
		}
		if a.reconstruct(cand, have) != nil {
			continue
		}
		chk := a.newShards(c)
		for j := 0; j < a.g.dataDisks(); j++ {
			copy(chk[j], cand[j])
		}
		if a.encode(chk) != nil {
			continue
		}
		consistent := true
		for j := a.g.dataDisks(); j < len(shards); j++ {
			consistent = consistent && bytes.Equal(chk[j], cand[j])
		}
		if consistent {
			if found >= 0 {
				return -1, nil
			}
			found, var_ = bad, cand
		}
	}
	return found, var_
}

func (a *Array) scrubMirror(row int64, grp int, repair bool, res *ScrubResult) error {
	c := a.g.chunk
	groups, w := a.g.mirrorGroups()
	l := a.lock(row*int64(groups) + int64(grp))
	l.Lock()
	defer l.Unlock()
	roles := a.snapshot()
	moff := row * c
	var copies [][]byte
	var who []int
	for r := grp * w; r < grp*w+w; r++ {
		if !readable(roles[r], moff, c) {
			continue
		}
		b := make([]byte, c)
		if a.readMember(r, roles[r], b, moff) == nil {
			copies = append(copies, b)
			who = append(who, r)
		}
	}
	if len(copies) < 2 {
		if len(copies) < w {
			res.Skipped++
		}
		return nil
	}
	same := true
	for _, b := range copies[1:] {
		same = same && bytes.Equal(b, copies[0])
	}
	if same {
		return nil
	}
	res.Mismatches++
	if !repair {
		return nil
	}
	// Majority, else the first copy on a member that is not write-mostly.
	best, bestVotes := -1, 0
	for i := range copies {
		v := 0
		for j := range copies {
			if bytes.Equal(copies[i], copies[j]) {
				v++
			}
		}
		if v > bestVotes {
			best, bestVotes = i, v
		}
	}
	if bestVotes*2 <= len(copies) {
		best = 0
		for i, r := range who {
			if roles[r].flags&FlagWriteMostly == 0 {
				best = i
				break
			}
		}
	}
	defer a.bitmapStartSpan(moff, moff+c)()
	for i, r := range who {
		if !bytes.Equal(copies[i], copies[best]) {
			_ = a.writeMember(r, roles[r], copies[best], moff)
		}
	}
	res.Repaired++
	return nil
}
