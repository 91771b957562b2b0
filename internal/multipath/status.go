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
)

// Status is what `rampart multipath status` shows of a map.
type Status struct {
	Name   string       `json:"name"`
	ID     string       `json:"id"`
	Policy Policy       `json:"policy"`
	Size   int64        `json:"size"`
	Paths  []PathStatus `json:"paths"`
	Time   time.Time    `json:"time"`
}

// PathStatus is one path's line: its URL, whether it is the active one, its state.
type PathStatus struct {
	URL     string    `json:"url"`
	Active  bool      `json:"active"`
	State   PathState `json:"state"`
	Since   time.Time `json:"since"`
	IOs     int64     `json:"ios"`
	LastErr string    `json:"last_error,omitempty"`
}

// Status reports the map now.
func (m *Map) Status(size int64) Status {
	st := Status{Name: m.cfg.Name, ID: m.id, Policy: m.cfg.Policy, Size: size, Time: time.Now()}
	m.mu.Lock()
	cur := m.current
	m.mu.Unlock()
	for i, p := range m.paths {
		p.mu.Lock()
		ps := PathStatus{URL: p.url.String(), State: p.state, Since: p.since, IOs: p.ios.Load(), LastErr: p.lastErr}
		p.mu.Unlock()
		ps.Active = ps.State == PathReady && (m.cfg.Policy == Multibus || i == cur)
		st.Paths = append(st.Paths, ps)
	}
	return st
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

// Print shows maps as `multipath -ll` does:
//
//	mpatha (naa.6001405...) rampart,LUN 0 size=10G policy=failover
//	|- iscsi://10.3.1.1:3260/iqn.../0 active ready
//	`- iscsi://10.3.2.1:3260/iqn.../0 enabled faulty
func Print(w io.Writer, sts []Status) {
	for _, st := range sts {
		fmt.Fprintf(w, "%s (%s) size=%s policy=%s\n", st.Name, st.ID, humanSize(st.Size), st.Policy)
		for i, p := range st.Paths {
			branch := "|-"
			if i == len(st.Paths)-1 {
				branch = "`-"
			}
			role := "enabled"
			if p.Active {
				role = "active"
			}
			line := fmt.Sprintf("%s %s %s %s", branch, p.URL, role, p.State)
			if p.State == PathFaulty && p.LastErr != "" {
				line += " (" + strings.TrimSpace(p.LastErr) + ")"
			}
			fmt.Fprintln(w, line)
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
