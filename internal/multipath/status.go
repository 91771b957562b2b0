package multipath

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
)

// Status is what `rampart multipath status` shows of a map.
type Status struct {
	Name     string `json:"name"`
	ID       string `json:"id"`   // designator as read, e.g. naa.6001405...
	WWID     string `json:"wwid"` // as scsi_id and multipath print it, e.g. 36001405...
	Device   string `json:"device,omitempty"`
	Policy   Policy `json:"policy"`
	Selector string `json:"selector"`
	Features string `json:"features"`
	Size     int64  `json:"size"`
	// Groups are the path groups, best first; Paths index into Paths.
	Groups []GroupStatus `json:"groups"`
	Paths  []PathStatus  `json:"paths"`
	// Configured is how many paths the map was opened with; Paths lacks those that
	// were logged out (LogoutPortal).
	Configured int `json:"configured"`
	// PortalRequests says that the process holding the map takes requests to log
	// out of one portal (`rampart iscsi logout -p`), or in to it again (`rampart iscsi
	// login`), in the status directory.
	PortalRequests bool      `json:"portal_requests,omitempty"`
	Time           time.Time `json:"time"`
	// Who holds the sessions: the process (for `rampart iscsi logout`), what started
	// it ("attach" or "iscsi login") and its initiator name.
	PID       int    `json:"pid,omitempty"`
	Origin    string `json:"origin,omitempty"`
	Initiator string `json:"initiator,omitempty"`
}

// GroupStatus is one path group: its priority and whether it is the one in use
// (active), usable (enabled) or has no usable path (disabled).
type GroupStatus struct {
	Prio   int    `json:"prio"`
	Status string `json:"status"`
	Paths  []int  `json:"paths"`
}

// PathStatus is one path's line: its URL, whether I/O goes to it, its checker state,
// priority and ALUA state, and its session.
type PathStatus struct {
	URL string `json:"url"`
	// Index is the path's place among the map's URLs (Status.Configured of them).
	Index   int       `json:"index"`
	Active  bool      `json:"active"`
	State   PathState `json:"state"`
	Since   time.Time `json:"since"`
	Prio    int       `json:"prio"`
	ALUA    string    `json:"alua,omitempty"`
	TPG     *uint16   `json:"target_port_group,omitempty"`
	IOs     int64     `json:"ios"`
	LastErr string    `json:"last_error,omitempty"`
	// Session is the path's iSCSI session, for `rampart iscsi session -P 3`.
	Session initiator.SessionStatus `json:"session"`
	LUN     uint64                  `json:"lun"`
}

// Status reports the map now; device names where it is attached.
func (m *Map) Status(size int64) Status {
	st := Status{Name: m.cfg.Name, ID: m.ID(), Policy: m.cfg.Policy, Selector: string(m.cfg.Selector) + " 0", Size: size, Time: time.Now(),
		Initiator: m.cfg.Session.InitiatorName}
	st.WWID = WWID(st.ID)
	switch {
	case m.cfg.QueueIfNoPath:
		st.Features = "1 queue_if_no_path"
	default:
		st.Features = fmt.Sprintf("no_path_retry %d", m.cfg.NoPathRetry)
	}
	m.mu.Lock()
	groups, active := m.groups, m.active
	m.mu.Unlock()
	// Paths lists the paths not logged out, in the order of the map's URLs; Index
	// keeps each one's place in that list, so that a logout does not renumber the
	// others' sessions.
	at := map[int]int{} // index into m.paths -> index into st.Paths
	for i, p := range m.paths {
		p.mu.Lock()
		if p.loggedOut {
			p.mu.Unlock()
			continue
		}
		ps := PathStatus{URL: p.url.String(), Index: i, State: p.state, Since: p.since, Prio: p.prio, IOs: p.ios.Load(), LastErr: p.lastErr, LUN: p.url.LUN}
		if p.alua.Supported {
			ps.ALUA = p.alua.State.String()
			tpg := p.alua.Port.Group
			ps.TPG = &tpg
		}
		p.mu.Unlock()
		ps.Session = p.conn().Status()
		at[i] = len(st.Paths)
		st.Paths = append(st.Paths, ps)
	}
	st.Configured = len(m.paths)
	for gi, g := range groups {
		gs := GroupStatus{Status: "disabled"}
		usable, up := false, false
		for _, i := range g {
			gs.Prio += m.prioOf(m.paths[i])
			usable = usable || m.paths[i].usable()
			up = up || m.paths[i].stateIs(PathGhost)
			if k, ok := at[i]; ok {
				gs.Paths = append(gs.Paths, k)
			}
		}
		gs.Prio /= max(len(g), 1)
		switch {
		case gi == active && usable:
			gs.Status = "active"
			for _, k := range gs.Paths {
				st.Paths[k].Active = st.Paths[k].State == PathReady
			}
		case usable || up:
			// multipath -ll's "enabled": usable, or reachable in an ALUA state
			// that refuses I/O for now (standby), as dm shows such a group
			gs.Status = "enabled"
		}
		st.Groups = append(st.Groups, gs)
	}
	return st
}

// WWID gives a designator as scsi_id and multipath print it: NAA as 3 and hex, EUI-64
// as 2 and hex, a T10 vendor ID as 1 and the text.
func WWID(id string) string {
	for prefix, digit := range map[string]string{"naa.": "3", "eui.": "2", "t10.": "1"} {
		if rest, ok := strings.CutPrefix(id, prefix); ok {
			return digit + rest
		}
	}
	return id
}

// WriteStatusFile saves st atomically as DIR/NAME.json, for `multipath status`.
func WriteStatusFile(dir string, st Status) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+st.Name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, st.Name+".json"))
}

// ReadStatusFiles loads every map's status from dir, by name.
func ReadStatusFiles(dir string) ([]Status, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Status
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			continue // removed while we read
		}
		var st Status
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("status file %s: %w", n, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// Print shows maps as `multipath -ll` does, with each path's priority and ALUA state:
//
//	mpatha (36001405...) fuse:/mnt/lun/mpatha rampart
//	size=10G features='1 queue_if_no_path' hwhandler='1 alua' wp=rw
//	|-+- policy='service-time 0' prio=50 status=active
//	| `- iscsi://10.3.1.1:3260/iqn.../0 active ready running prio=50 alua=active/optimized tpg=1
//	`-+- policy='service-time 0' prio=10 status=enabled
//	  `- iscsi://10.3.2.1:3260/iqn.../0 failed faulty blocked prio=10 (connection lost: ...)
func Print(w io.Writer, sts []Status) {
	for _, st := range sts {
		dev := st.Device
		if dev == "" {
			dev = "-"
		}
		fmt.Fprintf(w, "%s (%s) %s rampart\n", st.Name, st.WWID, dev)
		hw := "0"
		for _, p := range st.Paths {
			if p.ALUA != "" {
				hw = "1 alua"
			}
		}
		fmt.Fprintf(w, "size=%s features='%s' hwhandler='%s' policy=%s\n", humanSize(st.Size), st.Features, hw, st.Policy)
		for gi, g := range st.Groups {
			lastGroup := gi == len(st.Groups)-1
			branch, indent := "|-+-", "| "
			if lastGroup {
				branch, indent = "`-+-", "  "
			}
			fmt.Fprintf(w, "%s policy='%s' prio=%d status=%s\n", branch, st.Selector, g.Prio, g.Status)
			for k, i := range g.Paths {
				if i < 0 || i >= len(st.Paths) {
					continue
				}
				p := st.Paths[i]
				pb := "|-"
				if k == len(g.Paths)-1 {
					pb = "`-"
				}
				dm, dev := "active", "running"
				if p.State == PathFaulty {
					dm = "failed"
				}
				if p.Session.State != "" && p.Session.State != initiator.StateLoggedIn {
					dev = "blocked"
				}
				line := fmt.Sprintf("%s%s %s %s %s %s prio=%d", indent, pb, p.URL, dm, p.State, dev, p.Prio)
				if p.ALUA != "" {
					line += " alua=" + p.ALUA
					if p.TPG != nil {
						line += fmt.Sprintf(" tpg=%d", *p.TPG)
					}
				}
				if p.State == PathFaulty && p.LastErr != "" {
					line += " (" + strings.TrimSpace(p.LastErr) + ")"
				}
				fmt.Fprintln(w, line)
			}
		}
	}
}

func humanSize(n int64) string {
	units := []string{"", "K", "M", "G", "T", "P"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", f), "0"), ".") + units[i]
}

// RemoveStatusFile forgets a map that is no longer attached.
func RemoveStatusFile(dir, name string) {
	os.Remove(filepath.Join(dir, name+".json"))
}
