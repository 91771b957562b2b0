package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/raid"
)

// rampartCLI runs the rampart command line in process and returns its output.
func rampartCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

func raidStatusJSON(t *testing.T, members ...string) raid.Report {
	t.Helper()
	out, err := rampartCLI(t, append([]string{"raid", "status", "--json"}, members...)...)
	if err != nil {
		t.Fatalf("raid status --json: %v\n%s", err, out)
	}
	var r raid.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("raid status --json: %v in %q", err, out)
	}
	return r
}

// TestRaidLiveManagement is the drill of `rampart demo drill`: a RAID-5 served by
// `rampart target serve`, a member failed and a spare added through the CLI, which
// talks to the serving process; status --json shows the rebuild until it is done.
func TestRaidLiveManagement(t *testing.T) {
	t.Setenv("RAMPART_RUN_DIR", t.TempDir())
	dir := t.TempDir()
	m := []string{filepath.Join(dir, "m1"), filepath.Join(dir, "m2"), filepath.Join(dir, "m3")}
	spare := filepath.Join(dir, "spare")
	if out, err := rampartCLI(t, append([]string{"raid", "create", "--level", "5", "--size", "16M"}, m...)...); err != nil {
		t.Fatalf("raid create: %v\n%s", err, out)
	}
	// Offline: nobody serves it yet.
	if r := raidStatusJSON(t, m...); r.ServedBy != 0 || r.Active != 3 || r.Degraded {
		t.Errorf("offline status: got %+v, want 3 active, not served", r)
	}
	startServe(t, &targetServeOptions{
		targetOptions: &targetOptions{config: filepath.Join(dir, "target.yaml")},
		listen:        []string{"127.0.0.1:0"}, iqn: "iqn.2026-11.org.rampart:raid", backstore: "raid:" + strings.Join(m, ","),
	})
	r := raidStatusJSON(t, m...)
	if r.ServedBy == 0 || r.Level != 5 || r.RaidDevices != 3 || r.Active != 3 || r.Degraded || r.Progress != 1 {
		t.Fatalf("served status: got %+v, want raid5, 3 of 3 active, served", r)
	}
	// The demo's drill, verbatim.
	if out, err := rampartCLI(t, "raid", "fail", "--member", m[0], m[0], m[1], m[2]); err != nil || !strings.Contains(out, "[3/2] [_UU]") {
		t.Fatalf("raid fail: %v\n%s", err, out)
	}
	if out, err := rampartCLI(t, "raid", "fail", "--member", m[1], m[0], m[1], m[2]); err == nil || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), "served by pid") {
		t.Errorf("second raid fail: got %v, want a refusal asking for --force\n%s", err, out)
	}
	if out, err := rampartCLI(t, "raid", "add", "--new", spare, "--max-speed", "4M", m[0], m[1], m[2]); err != nil || !strings.Contains(out, "recovery =") {
		t.Fatalf("raid add: %v\n%s", err, out)
	}
	sawProgress := false
	deadline := time.Now().Add(60 * time.Second)
	for {
		r = raidStatusJSON(t, m...)
		if !r.Rebuilding {
			break
		}
		sawProgress = sawProgress || (r.Progress > 0 && r.Progress < 1 && r.Degraded)
		if time.Now().After(deadline) {
			t.Fatalf("rebuild not done after 60 s: %s", r.Mdstat)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !sawProgress {
		t.Errorf("never saw the rebuild in progress")
	}
	if r.Degraded || r.Active != 3 || r.Progress != 1 || !strings.Contains(r.Mdstat, "[3/3] [UUU]") {
		t.Fatalf("after the rebuild: got %+v", r)
	}
	out, err := rampartCLI(t, "raid", "detail", spare, m[1], m[2])
	if err != nil || !strings.Contains(out, "Served by : pid") || !strings.Contains(out, "active       "+spare) {
		t.Errorf("raid detail: %v\n%s", err, out)
	}
	if out, err := rampartCLI(t, "raid", "check", spare, m[1], m[2]); err != nil || !strings.Contains(out, "mismatches: 0") {
		t.Errorf("raid check: %v\n%s", err, out)
	}
}
