package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

const showFile = `version: 1
backstores:
- {name: disk0, volume: /var/lib/rampart/d0.img, size: 1073741824, block_size: 4096, serial: 0123456789abcdef}
- {name: disk1, volume: "raid:/dev/sdb,/dev/sdc,/dev/sdd", read_only: true, serial: fedcba9876543210}
targets:
- iqn: iqn.2026-11.org.rampart:t0
  portal_groups:
  - {tag: 1, portals: ["10.3.1.1:3260"]}
  - {tag: 2, portals: ["10.3.2.1:3260"]}
  luns:
  - {lun: 0, backstore: disk0}
  - {lun: 1, backstore: disk1}
  acls:
  - initiator_iqn: iqn.2026-11.org.rampart:client1
    mapped_luns: [{lun: 0, target_lun: 1}]
    chap: {user: client1, secret: client1-secret}
  - initiator_iqn: iqn.2026-11.org.rampart:client2
  chap: {user: all, secret: target-wide-secret}
  mutual_chap: {user: t0, secret: mutual-secret-x}
- iqn: iqn.2026-11.org.rampart:open
  open_access: true
discovery_chap: {user: disc, secret: discovery-secret}
`

func applyShowFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "in.yaml")
	if err := os.WriteFile(file, []byte(showFile), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "target.yaml")
	mustTargetCLI(t, path, "apply", file)
	return path
}

func TestTargetShowGolden(t *testing.T) {
	path := applyShowFile(t)
	for _, tt := range []struct {
		golden string
		args   []string
	}{
		{"target-show.golden", []string{"show"}},
		{"target-show-json.golden", []string{"show", "--json"}},
	} {
		got := mustTargetCLI(t, path, tt.args...)
		for _, secret := range []string{"client1-secret", "target-wide-secret", "mutual-secret-x", "discovery-secret"} {
			if strings.Contains(got, secret) {
				t.Errorf("%s: output shows the CHAP secret %q:\n%s", strings.Join(tt.args, " "), secret, got)
			}
		}
		golden := filepath.Join("testdata", tt.golden)
		if *updateGolden {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -run TestTargetShowGolden -update)", err)
		}
		if got != string(want) {
			t.Errorf("%s: got\n%s\nwant\n%s", strings.Join(tt.args, " "), got, want)
		}
	}
}

func TestTargetApply(t *testing.T) {
	path := applyShowFile(t)
	// Merge: a second file replaces disk0 (keeping its serial: no serial given, same
	// volume) and adds a target; the rest stays.
	dir := t.TempDir()
	file := filepath.Join(dir, "more.yaml")
	more := `version: 1
backstores:
- {name: disk0, volume: /var/lib/rampart/d0.img, size: 2147483648}
targets:
- iqn: iqn.2026-11.org.rampart:t9
  luns: [{lun: 0, backstore: disk0}]
`
	if err := os.WriteFile(file, []byte(more), 0o600); err != nil {
		t.Fatal(err)
	}
	mustTargetCLI(t, path, "apply", file)
	c := loadTargetConfig(t, path)
	if b := c.Backstore("disk0"); b.Size != 2<<30 || b.Serial != "0123456789abcdef" {
		t.Errorf("disk0 after merge: got %s, want size 2G and the serial kept", jsonOf(b))
	}
	if len(c.Targets) != 3 || c.Backstore("disk1") == nil || c.DiscoveryCHAP == nil {
		t.Errorf("after merge: got %s, want the old targets, disk1 and discovery CHAP kept, t9 added", jsonOf(c))
	}
	// A file that names a missing backstore is refused, naming the LUN.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\ntargets:\n- iqn: iqn.2026-11.org.x:y\n  luns: [{lun: 3, backstore: disk9}]\n"), 0o600)
	if _, err := runTargetCLI(t, path, "apply", bad); err == nil || !strings.Contains(err.Error(), `LUN 3: unknown backstore "disk9"`) {
		t.Errorf("apply of a bad file: got %v, want an error naming LUN 3 and disk9", err)
	}
	// --replace: exactly the file.
	mustTargetCLI(t, path, "apply", "--replace", filepath.Join("..", "..", "examples", "seed-target.yaml"))
	c = loadTargetConfig(t, path)
	if len(c.Targets) != 3 || c.Target("iqn.2026-11.org.rampart:t0") != nil || c.Target("iqn.2024-12.tp2.b3:data-chunk2") == nil {
		t.Errorf("after --replace with the seed: got %s, want only the seed's 3 targets", jsonOf(c.Targets))
	}
	for _, b := range c.Backstores {
		if len(b.Serial) != 16 {
			t.Errorf("backstore %s: got serial %q, want a generated 16-hex serial", b.Name, b.Serial)
		}
	}
}
