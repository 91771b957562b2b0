package raid

import "fmt"

// geometry maps array offsets to member offsets for one level.
type geometry struct {
	level    int
	n        int   // raid devices
	chunk    int64 // bytes
	bs       int
	dataOff  int64 // member offset of the data area
	dataSize int64 // data bytes per member, a multiple of chunk
	spare    int64 // CoW arrays: stripes of dataSize that are spare, not capacity
}

// tolerance is how many members the level can lose.
func (g *geometry) tolerance() int {
	switch g.level {
	case 0:
		return 0
	case 1:
		return g.n - 1
	case 10:
		return 1 // guaranteed; one per mirror pair in fact
	case 5:
		return 1
	case 6:
		return 2
	}
	return 0
}

// parity is the number of parity shards per stripe (RAID-5/6), else 0.
func (g *geometry) parity() int {
	switch g.level {
	case 5:
		return 1
	case 6:
		return 2
	}
	return 0
}

// dataDisks is how many members' worth of data the array holds.
func (g *geometry) dataDisks() int {
	switch g.level {
	case 0:
		return g.n
	case 1:
		return 1
	case 10:
		return g.n / 2
	}
	return g.n - g.parity()
}

func (g *geometry) size() int64 { return int64(g.dataDisks()) * (g.dataSize - g.spare*g.chunk) }

func (g *geometry) validate() error {
	min := map[int]int{0: 1, 1: 2, 10: 4, 5: 3, 6: 4}
	m, ok := min[g.level]
	switch {
	case !ok:
		return fmt.Errorf("level %d (want 0, 1, 5, 6 or 10): %w", g.level, ErrBadGeometry)
	case g.n < m || g.n > MaxMembers:
		return fmt.Errorf("level %d with %d members (want %d to %d): %w", g.level, g.n, m, MaxMembers, ErrBadGeometry)
	case g.level == 10 && g.n%2 != 0:
		return fmt.Errorf("level 10 with %d members (want an even number): %w", g.n, ErrBadGeometry)
	case g.chunk <= 0 || g.chunk%int64(g.bs) != 0 || g.chunk > 16<<20:
		return fmt.Errorf("chunk %d bytes with block size %d: %w", g.chunk, g.bs, ErrBadGeometry)
	case g.dataSize <= 0 || g.spare < 0 || g.dataSize <= g.spare*g.chunk:
		return fmt.Errorf("members too small for the metadata area of %d bytes: %w", g.dataOff, ErrBadGeometry)
	}
	return nil
}

// mirrorGroups is the number of mirror groups (RAID-1: 1, RAID-10: n/2) and their width.
func (g *geometry) mirrorGroups() (groups, width int) {
	if g.level == 1 {
		return 1, g.n
	}
	return g.n / 2, 2
}

// mirrorMap maps an array offset of RAID-1/10 to its mirror group, the offset inside
// each member's data area, and how many bytes from there stay in the same chunk.
func (g *geometry) mirrorMap(off int64) (group int, moff, n int64) {
	groups, _ := g.mirrorGroups()
	c := off / g.chunk
	in := off % g.chunk
	return int(c % int64(groups)), (c/int64(groups))*g.chunk + in, g.chunk - in
}

// stripeWidth is the data bytes per stripe of RAID-0/5/6.
func (g *geometry) stripeWidth() int64 { return int64(g.dataDisks()) * g.chunk }

// role returns the member role that holds shard j (data 0..k-1, then P, Q) of stripe s
// in the left-symmetric layout; RAID-0 has data shards only.
func (g *geometry) role(s int64, j int) int {
	n := int64(g.n)
	if g.level == 0 {
		return j
	}
	k := g.dataDisks()
	pd := (n - 1) - s%n
	switch {
	case j == k: // P
		return int(pd)
	case j == k+1: // Q
		return int((pd + 1) % n)
	}
	return int((pd + int64(g.parity()) + int64(j)) % n)
}
