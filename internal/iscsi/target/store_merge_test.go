package target

import (
	"slices"
	"testing"
)

func TestMergeKeepsSerials(t *testing.T) {
	base := sampleConfig()
	file := Config{Backstores: []Backstore{
		{Name: "disk0", Volume: "/var/lib/rampart/d0.img", Size: 2 << 30}, // same volume: keeps serial
		{Name: "disk1", Volume: "/new.img"},                               // new: gets one
	}}
	got, err := Merge(base, file, false)
	if err != nil {
		t.Fatal(err)
	}
	if b := got.Backstore("disk0"); b.Serial != "0123456789abcdef" || b.Size != 2<<30 {
		t.Errorf("disk0: got %+v, want size 2G and serial kept", *b)
	}
	if b := got.Backstore("disk1"); b == nil || len(b.Serial) != 16 {
		t.Errorf("disk1: got %+v, want a new 16-hex serial", b)
	}
	if len(got.Targets) != 1 || got.DiscoveryCHAP == nil {
		t.Errorf("merge dropped the saved target or discovery CHAP: %+v", got)
	}
	if base.Backstores[0].Size != 1<<30 {
		t.Errorf("Merge modified its base")
	}
	rep, err := Merge(base, file, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Targets) != 0 || len(rep.Backstores) != 2 || rep.Backstore("disk0").Serial != "0123456789abcdef" {
		t.Errorf("replace: got %+v, want only the file's backstores, disk0's serial kept", rep)
	}
	moved := Config{Backstores: []Backstore{{Name: "disk0", Volume: "/elsewhere.img"}}}
	got, _ = Merge(base, moved, true)
	if s := got.Backstore("disk0").Serial; s == "0123456789abcdef" || len(s) != 16 {
		t.Errorf("disk0 on another volume: got serial %q, want a new one", s)
	}
}

func TestDiff(t *testing.T) {
	prev := sampleConfig()
	next := cloneConfig(prev)
	next.Backstores = append(next.Backstores, Backstore{Name: "disk1", Volume: "/d1"})
	next.Targets[0].LUNs = append(next.Targets[0].LUNs, LUN{LUN: 1, Backstore: "disk1"})
	next.Targets[0].OpenAccess = true
	next.Targets = append(next.Targets, Target{IQN: "iqn.2026-11.org.rampart:t1"})
	want := []string{
		"backstore disk1 added (/d1)",
		"target iqn.2026-11.org.rampart:t0 LUN 1 -> backstore disk1",
		"target iqn.2026-11.org.rampart:t0 access (ACLs, open access) changed",
		"target iqn.2026-11.org.rampart:t1 added",
	}
	if got := Diff(prev, next); !slices.Equal(got, want) {
		t.Errorf("Diff:\ngot  %q\nwant %q", got, want)
	}
	if got := Diff(next, prev); len(got) != 4 {
		t.Errorf("reverse Diff: got %q, want 4 lines (removals)", got)
	}
	if got := Diff(prev, prev); len(got) != 0 {
		t.Errorf("Diff of equal configs: got %q, want none", got)
	}
}
