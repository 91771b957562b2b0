package raid

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// MemberStatus describes one role or spare.
type MemberStatus struct {
	Role        int // -1 for a spare
	Name        string
	State       RoleState
	WriteMostly bool
}

// Recovery is the progress of a rebuild.
type Recovery struct {
	Member      string
	Done, Total int64
	Speed       float64 // bytes/s
	Finish      time.Duration
}

// Status is a snapshot of a running array.
type Status struct {
	Name        string
	UUID        UUID
	Level       int
	RaidDevices int
	Active      int
	Chunk       int64
	Size        int64
	Clean       bool
	Failed      bool
	Events      uint64
	Policy      uint32
	Members     []MemberStatus
	Recovery    *Recovery
	ServedBy    int // pid of this process when it serves the control socket
	// Write-intent bitmap (BitmapRegions 0: none).
	BitmapRegions, BitmapDirty, BitmapChunk int64
	// CoW arrays: spare physical stripes, how many are free now, and how many
	// stripes wait for a flush to settle.
	CowSpare, CowFree, CowUnsettled int64
}

// Status reports the array's state.
func (a *Array) Status() Status {
	// The bitmap's lock is taken before a.mu, never inside it: a rebuild holds
	// bm.mu while it takes a.mu (persistBitmapLocked).
	var bmRegions, bmDirty, bmChunk int64
	if a.bm != nil {
		bmRegions, bmDirty, bmChunk = a.bm.n, a.bm.dirtyCount(), a.bm.region
	}
	var cowSpare, cowFree, cowUnsettled int64
	if c := a.cow; c != nil {
		c.mu.Lock()
		cowSpare, cowFree, cowUnsettled = a.g.spare, c.nfree, int64(len(c.unsettled))
		c.mu.Unlock()
	}
	a.mu.Lock()
	st := Status{Name: a.name, UUID: a.uuid, Level: a.g.level, RaidDevices: a.g.n, Chunk: a.g.chunk,
		Size: a.Size(), Clean: a.clean.Load(), Failed: a.failed.Load(), Events: a.events, Policy: a.policy,
		BitmapRegions: bmRegions, BitmapDirty: bmDirty, BitmapChunk: bmChunk,
		CowSpare: cowSpare, CowFree: cowFree, CowUnsettled: cowUnsettled}
	if a.ctl != nil {
		st.ServedBy = os.Getpid()
	}
	for r, m := range a.roles {
		ms := MemberStatus{Role: r, State: RoleMissing}
		if m != nil {
			ms.Name, ms.State, ms.WriteMostly = m.name, m.st(), m.flags&FlagWriteMostly != 0
			if ms.State == RoleActive {
				st.Active++
			}
		}
		st.Members = append(st.Members, ms)
	}
	for _, m := range a.spares {
		st.Members = append(st.Members, MemberStatus{Role: -1, Name: m.name, State: RoleMissing})
	}
	a.mu.Unlock()
	a.rb.mu.Lock()
	if a.rb.active {
		el := time.Since(a.rb.started).Seconds()
		rec := &Recovery{Member: a.rb.member, Done: a.rb.done, Total: a.rb.total}
		if el > 0 {
			rec.Speed = float64(rec.Done) / el
		}
		if rec.Speed > 0 {
			rec.Finish = time.Duration(float64(rec.Total-rec.Done) / rec.Speed * float64(time.Second))
		}
		st.Recovery = rec
	}
	a.rb.mu.Unlock()
	return st
}

// String formats the status like /proc/mdstat.
func (st Status) String() string {
	var b strings.Builder
	state := "active"
	if st.Failed {
		state = "FAILED"
	}
	fmt.Fprintf(&b, "%s : %s raid%d", st.Name, state, st.Level)
	for _, m := range st.Members {
		if m.Name == "" {
			continue
		}
		fmt.Fprintf(&b, " %s", m.Name)
		if m.Role < 0 {
			b.WriteString("(S)")
		} else {
			fmt.Fprintf(&b, "[%d]", m.Role)
		}
		if m.WriteMostly {
			b.WriteString("(W)")
		}
		if m.State == RoleFaulty {
			b.WriteString("(F)")
		}
	}
	fmt.Fprintf(&b, "\n      %d blocks level %d, %dk chunk [%d/%d] [", st.Size/1024, st.Level, st.Chunk/1024, st.RaidDevices, st.Active)
	for _, m := range st.Members {
		if m.Role < 0 {
			continue
		}
		if m.State == RoleActive {
			b.WriteByte('U')
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteString("]\n")
	if st.BitmapRegions > 0 {
		fmt.Fprintf(&b, "      bitmap: %d/%d regions dirty, %dKB chunk\n", st.BitmapDirty, st.BitmapRegions, st.BitmapChunk/1024)
	}
	if r := st.Recovery; r != nil {
		frac := float64(r.Done) / float64(max(r.Total, 1))
		bar := int(frac * 20)
		fmt.Fprintf(&b, "      [%s>%s]  recovery = %.1f%% (%d/%d) finish=%.1fmin speed=%.0fK/sec\n",
			strings.Repeat("=", bar), strings.Repeat(".", 20-bar), frac*100, r.Done/1024, r.Total/1024,
			r.Finish.Minutes(), r.Speed/1024)
	}
	return b.String()
}
