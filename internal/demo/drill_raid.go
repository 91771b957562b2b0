package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// drillRAIDMember fails a member of md0 (chunk1's array) and rebuilds onto a spare,
// through the control socket of the array the target serves.
func drillRAIDMember(ctx context.Context, t Topology, st *State, c *client) StepResult {
	s := newStep("fail a RAID member and rebuild onto the spare")
	members := t.ArrayMembers(0)
	c.take()
	s.start = time.Now()
	rs, err := raidStatus(ctx, t.Bin, members)
	if err != nil {
		s.fail("`rampart raid status` cannot reach the served array: %v", err)
		s.Counts = c.take()
		return s.StepResult
	}
	if rs.ServedBy == 0 {
		s.fail("`rampart raid status` assembled md0 itself: the serving target has no control socket")
		s.Counts = c.take()
		return s.StepResult
	}
	if rs.Degraded {
		s.fail("md0 is degraded before the drill:\n%s", rs.Mdstat)
		s.Counts = c.take()
		return s.StepResult
	}
	cur := rs.memberNames()
	victim := cur[1]
	spare := t.Spare()
	for k := 2; slices.Contains(cur, spare) || fileHasData(spare); k++ {
		spare = strings.TrimSuffix(t.Spare(), ".img") + fmt.Sprintf("%d.img", k)
	}
	s.event("md0 = %s; rampart raid fail --member %s", strings.Join(baseNames(cur), ","), filepath.Base(victim))
	if _, err := run(ctx, t.Bin, append([]string{"raid", "fail", "--member", victim}, cur...)...); err != nil {
		s.fail("%v", err)
		s.Counts = c.take()
		return s.StepResult
	}
	if rs, err := raidStatus(ctx, t.Bin, cur); err == nil {
		s.event("md0 degraded: %d of %d members active (%s)", rs.Active, rs.RaidDevices, memberStates(rs))
	}
	sleep(ctx, 3*time.Second)
	s.event("rampart raid add --new %s", filepath.Base(spare))
	if _, err := run(ctx, t.Bin, append([]string{"raid", "add", "--new", spare}, cur...)...); err != nil {
		s.fail("%v", err)
		s.Counts = c.take()
		return s.StepResult
	}
	var last raidReport
	seenRebuild := false
	err = waitFor(ctx, "md0 rebuilt", 300*time.Second, 250*time.Millisecond, func() bool {
		r, err := raidStatus(ctx, t.Bin, cur)
		if err != nil {
			return false
		}
		last = r
		if r.Rebuilding && !seenRebuild {
			seenRebuild = true
			s.event("rebuilding onto %s", filepath.Base(spare))
		}
		return !r.Rebuilding && !r.Degraded && r.Active == r.RaidDevices
	})
	if err != nil {
		s.fail("md0 not rebuilt: %v\n%s", err, last.Mdstat)
	} else {
		s.event("md0 whole again: %d of %d members active (%s)", last.Active, last.RaidDevices, memberStates(last))
	}
	s.Counts = c.take()
	return s.StepResult
}

// raidReport is what the demo reads of `rampart raid status --json`.
type raidReport struct {
	Name        string `json:"name"`
	RaidDevices int    `json:"raid_devices"`
	Active      int    `json:"active"`
	Degraded    bool   `json:"degraded"`
	Rebuilding  bool   `json:"rebuilding"`
	SizeBytes   int64  `json:"size_bytes"`
	ServedBy    int    `json:"served_by"`
	Mdstat      string `json:"mdstat"`
	Members     []struct {
		Role  int    `json:"role"`
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"members"`
}

// raidStatus asks `rampart raid status --json` about the array of members.
func raidStatus(ctx context.Context, bin string, members []string) (raidReport, error) {
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(c, bin, append([]string{"raid", "status", "--json"}, members...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return raidReport{}, fmt.Errorf("raid status: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return raidReport{}, fmt.Errorf("raid status: %w", err)
	}
	var r raidReport
	if err := json.Unmarshal(out, &r); err != nil {
		return raidReport{}, fmt.Errorf("raid status --json: %w", err)
	}
	return r, nil
}

// memberNames are the array's members by role (spares and unknown roles left out).
func (r raidReport) memberNames() []string {
	names := make([]string, r.RaidDevices)
	for _, m := range r.Members {
		if m.Role >= 0 && m.Role < len(names) && m.Name != "" {
			names[m.Role] = m.Name
		}
	}
	return slices.DeleteFunc(names, func(n string) bool { return n == "" })
}

// fileHasData reports whether a file has any allocated block: a spare used by an
// earlier drill has, a fresh sparse one has not.
func fileHasData(path string) bool {
	var st syscall.Stat_t
	return syscall.Stat(path, &st) == nil && st.Blocks > 0
}

func memberStates(r raidReport) string {
	var parts []string
	for _, m := range r.Members {
		parts = append(parts, filepath.Base(m.Name)+" "+m.State)
	}
	return strings.Join(parts, ", ")
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}
