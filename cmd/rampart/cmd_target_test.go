package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rampart-storage/rampart/internal/iscsi/target"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files in testdata/")

const (
	tIQN = "iqn.2026-11.org.rampart:t0"
	iIQN = "iqn.2026-11.org.rampart:client1"
)

// runTargetCLI runs `rampart target ARGS --config PATH` and returns its output.
func runTargetCLI(t testing.TB, path string, args ...string) (string, error) {
	t.Helper()
	cmd := newTargetCmd(&globalOptions{})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--config", path))
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func mustTargetCLI(t testing.TB, path string, args ...string) string {
	t.Helper()
	out, err := runTargetCLI(t, path, args...)
	if err != nil {
		t.Fatalf("rampart target %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func loadTargetConfig(t testing.TB, path string) target.Config {
	t.Helper()
	cfg, err := target.NewStore(path).Load()
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return cfg
}

// base is the configuration most cases start from.
var base = [][]string{
	{"backstore", "create", "disk0", "/var/lib/rampart/d0.img", "--size", "1G"},
	{"create", tIQN},
	{"portal", "create", tIQN, "10.3.1.1"},
	{"lun", "create", tIQN, "disk0"},
	{"acl", "create", tIQN, iIQN},
}

func TestTargetCLI(t *testing.T) {
	tests := []struct {
		name  string
		setup [][]string
		args  []string
		// wantErr, when set, is a substring of the error, which must be a usage error.
		wantErr string
		check   func(c target.Config) string // "" when fine, else what is wrong
	}{
		{name: "backstore create", args: []string{"backstore", "create", "b", "/v.img", "--size", "10G", "--block-size", "4096", "--read-only"},
			check: func(c target.Config) string {
				b := c.Backstore("b")
				if b == nil || b.Volume != "/v.img" || b.Size != 10<<30 || b.BlockSize != 4096 || !b.ReadOnly || len(b.Serial) != 16 {
					return "got " + jsonOf(b) + `, want /v.img 10G 4096 read-only with a 16-hex serial`
				}
				return ""
			}},
		{name: "backstore bad size", args: []string{"backstore", "create", "b", "/v", "--size", "10Q"}, wantErr: `--size: size "10Q"`},
		{name: "backstore bad block size", args: []string{"backstore", "create", "b", "/v", "--block-size", "1024"}, wantErr: "--block-size 1024, want 512 or 4096"},
		{name: "backstore duplicate", setup: base, args: []string{"backstore", "create", "disk0", "/x"}, wantErr: `backstore "disk0" already exists`},
		{name: "backstore delete mapped refused", setup: base, args: []string{"backstore", "delete", "disk0"},
			wantErr: `backstore "disk0" is mapped as target ` + tIQN + ` LUN 0 (use --force`},
		{name: "backstore delete --force", setup: base, args: []string{"backstore", "delete", "disk0", "--force"},
			check: func(c target.Config) string {
				if len(c.Backstores) != 0 || len(c.Target(tIQN).LUNs) != 0 {
					return "got " + jsonOf(c) + ", want no backstore and no LUN"
				}
				return ""
			}},
		{name: "backstore delete unknown", args: []string{"backstore", "delete", "zz"}, wantErr: `backstore "zz" does not exist`},
		{name: "target create bad IQN", args: []string{"create", "iqn.bogus"}, wantErr: `target "iqn.bogus": not an iSCSI name`},
		{name: "target create", args: []string{"create", tIQN},
			check: func(c target.Config) string {
				if len(c.Targets) != 1 || c.Targets[0].IQN != tIQN || len(c.Targets[0].PortalGroups) != 0 {
					return "got " + jsonOf(c.Targets) + ", want one empty target"
				}
				return ""
			}},
		{name: "target delete with LUNs refused", setup: base, args: []string{"delete", tIQN}, wantErr: "has 1 LUNs and 1 ACLs (use --force"},
		{name: "target delete --force", setup: base, args: []string{"delete", tIQN, "--force"},
			check: func(c target.Config) string {
				if len(c.Targets) != 0 || len(c.Backstores) != 1 {
					return "got " + jsonOf(c) + ", want no target and the backstore kept"
				}
				return ""
			}},
		{name: "portal default port and tpg", setup: base, args: []string{"portal", "create", tIQN, "10.3.2.1", "--tpg", "2"},
			check: func(c target.Config) string {
				pg := c.Target(tIQN).PortalGroups
				if len(pg) != 2 || pg[0].Tag != 1 || pg[0].Portals[0] != "10.3.1.1:3260" || pg[1].Tag != 2 || pg[1].Portals[0] != "10.3.2.1:3260" {
					return "got " + jsonOf(pg) + ", want tpg1 10.3.1.1:3260 and tpg2 10.3.2.1:3260"
				}
				return ""
			}},
		{name: "tpg alua standby", setup: base, args: []string{"tpg", tIQN, "1", "alua", "standby"},
			check: func(c target.Config) string {
				if pg := c.Target(tIQN).PortalGroups; len(pg) != 1 || pg[0].ALUA != target.ALUAStandby {
					return "got " + jsonOf(pg) + ", want tpg1 in standby"
				}
				return ""
			}},
		{name: "tpg alua back to optimized", setup: append(slices.Clone(base), []string{"tpg", tIQN, "1", "alua", "unavailable"}), args: []string{"tpg", tIQN, "1", "alua", "active-optimized"},
			check: func(c target.Config) string {
				if pg := c.Target(tIQN).PortalGroups; len(pg) != 1 || pg[0].ALUA != "" {
					return "got " + jsonOf(pg) + ", want tpg1 with the default state"
				}
				return ""
			}},
		{name: "tpg alua bad state", setup: base, args: []string{"tpg", tIQN, "1", "alua", "sleepy"}, wantErr: `ALUA state "sleepy"`},
		{name: "tpg alua no such group", setup: base, args: []string{"tpg", tIQN, "2", "alua", "standby"}, wantErr: "no portal group 2"},
		{name: "tpg unknown attribute", setup: base, args: []string{"tpg", tIQN, "1", "color", "red"}, wantErr: `attribute "color"`},
		{name: "portal duplicate", setup: base, args: []string{"portal", "create", tIQN, "10.3.1.1:3260", "--tpg", "3"}, wantErr: "portal 10.3.1.1:3260 already in portal group 1"},
		{name: "portal bad address", setup: base, args: []string{"portal", "create", tIQN, "storage1:3260"}, wantErr: `host "storage1" is not an IP address`},
		{name: "portal delete", setup: base, args: []string{"portal", "delete", tIQN, "10.3.1.1:3260"},
			check: func(c target.Config) string {
				if pg := c.Target(tIQN).PortalGroups; len(pg) != 0 {
					return "got " + jsonOf(pg) + ", want none"
				}
				return ""
			}},
		{name: "portal delete unknown", setup: base, args: []string{"portal", "delete", tIQN, "10.9.9.9"}, wantErr: "no portal 10.9.9.9:3260"},
		{name: "lun next free", setup: base, args: []string{"lun", "create", tIQN, "disk0"},
			check: func(c target.Config) string {
				if l := c.Target(tIQN).LUNs; len(l) != 2 || l[1].LUN != 1 {
					return "got " + jsonOf(l) + ", want LUNs 0 and 1"
				}
				return ""
			}},
		{name: "lun explicit", setup: base, args: []string{"lun", "create", tIQN, "disk0", "--lun", "7"},
			check: func(c target.Config) string {
				if l := c.Target(tIQN).LUNs; len(l) != 2 || l[1].LUN != 7 {
					return "got " + jsonOf(l) + ", want LUNs 0 and 7"
				}
				return ""
			}},
		{name: "lun taken", setup: base, args: []string{"lun", "create", tIQN, "disk0", "--lun", "0"}, wantErr: "LUN 0 already exists"},
		{name: "lun too large", setup: base, args: []string{"lun", "create", tIQN, "disk0", "--lun", "16384"}, wantErr: "LUN 16384 above 16383"},
		{name: "lun unknown backstore", setup: base, args: []string{"lun", "create", tIQN, "disk9", "--lun", "3"}, wantErr: `target ` + tIQN + `: backstore "disk9" does not exist`},
		{name: "lun unknown target", setup: base, args: []string{"lun", "create", "iqn.2026-11.org.rampart:nope", "disk0"}, wantErr: "target iqn.2026-11.org.rampart:nope does not exist"},
		{name: "lun delete drops mappings", setup: append(base[:4:4], []string{"acl", "create", tIQN, iIQN, "--map-lun", "5=0"}), args: []string{"lun", "delete", tIQN, "0"},
			check: func(c target.Config) string {
				tg := c.Target(tIQN)
				if len(tg.LUNs) != 0 || len(tg.ACLs[0].MappedLUNs) != 0 {
					return "got " + jsonOf(tg) + ", want no LUN and no mapped LUN"
				}
				return ""
			}},
		{name: "lun delete not a number", setup: base, args: []string{"lun", "delete", tIQN, "x"}, wantErr: `LUN "x": want a number`},
		{name: "acl with mapped LUN", setup: base[:4], args: []string{"acl", "create", tIQN, iIQN, "--map-lun", "5=0"},
			check: func(c target.Config) string {
				a := c.Target(tIQN).ACL(iIQN)
				if a == nil || len(a.MappedLUNs) != 1 || a.MappedLUNs[0] != (target.MappedLUN{LUN: 5, TargetLUN: 0}) {
					return "got " + jsonOf(a) + ", want mapped LUN 5 -> 0"
				}
				return ""
			}},
		{name: "acl mapped LUN missing", setup: base[:4], args: []string{"acl", "create", tIQN, iIQN, "--map-lun", "5=3"}, wantErr: "mapped LUN 5 names target LUN 3, which does not exist"},
		{name: "acl bad map syntax", setup: base[:4], args: []string{"acl", "create", tIQN, iIQN, "--map-lun", "5"}, wantErr: `--map-lun "5": want MAPPED=TARGETLUN`},
		{name: "acl duplicate", setup: base, args: []string{"acl", "create", tIQN, iIQN}, wantErr: "ACL for " + iIQN + " already exists"},
		{name: "acl delete", setup: base, args: []string{"acl", "delete", tIQN, iIQN},
			check: func(c target.Config) string {
				if a := c.Target(tIQN).ACLs; len(a) != 0 {
					return "got " + jsonOf(a) + ", want none"
				}
				return ""
			}},
		{name: "chap on target", setup: base, args: []string{"chap", "set", tIQN, "--user", "u", "--secret", "0123456789ab", "--mutual-user", "t", "--mutual-secret", "ba9876543210"},
			check: func(c target.Config) string {
				tg := c.Target(tIQN)
				if tg.CHAP == nil || *tg.CHAP != (target.CHAP{User: "u", Secret: "0123456789ab"}) || tg.MutualCHAP == nil || tg.MutualCHAP.User != "t" {
					return "got " + jsonOf(tg) + ", want CHAP u and mutual t"
				}
				return ""
			}},
		{name: "chap on ACL", setup: base, args: []string{"chap", "set", tIQN, "--initiator", iIQN, "--user", "u", "--secret", "0123456789ab"},
			check: func(c target.Config) string {
				if a := c.Target(tIQN).ACL(iIQN); a.CHAP == nil || a.CHAP.User != "u" {
					return "got " + jsonOf(a) + ", want CHAP u"
				}
				return ""
			}},
		{name: "chap short secret", setup: base, args: []string{"chap", "set", tIQN, "--user", "u", "--secret", "short"}, wantErr: "CHAP secret of 5 bytes, want 12 to 255"},
		{name: "chap missing secret", setup: base, args: []string{"chap", "set", tIQN, "--user", "u"}, wantErr: "--user and --secret are required"},
		{name: "chap clear", setup: append(base[:5:5], []string{"chap", "set", tIQN, "--user", "u", "--secret", "0123456789ab"}), args: []string{"chap", "clear", tIQN},
			check: func(c target.Config) string {
				if tg := c.Target(tIQN); tg.CHAP != nil {
					return "got " + jsonOf(tg.CHAP) + ", want none"
				}
				return ""
			}},
		{name: "discovery chap", args: []string{"discovery-chap", "set", "--user", "d", "--secret", "0123456789ab"},
			check: func(c target.Config) string {
				if c.DiscoveryCHAP == nil || c.DiscoveryCHAP.User != "d" {
					return "got " + jsonOf(c.DiscoveryCHAP) + ", want d"
				}
				return ""
			}},
		{name: "discovery chap clear", setup: [][]string{{"discovery-chap", "set", "--user", "d", "--secret", "0123456789ab"}}, args: []string{"discovery-chap", "clear"},
			check: func(c target.Config) string {
				if c.DiscoveryCHAP != nil {
					return "got " + jsonOf(c.DiscoveryCHAP) + ", want none"
				}
				return ""
			}},
		{name: "open and close", setup: append(base[:5:5], []string{"open", tIQN}), args: []string{"close", tIQN},
			check: func(c target.Config) string {
				if c.Target(tIQN).OpenAccess {
					return "got open access, want closed"
				}
				return ""
			}},
		{name: "open", setup: base, args: []string{"open", tIQN},
			check: func(c target.Config) string {
				if !c.Target(tIQN).OpenAccess {
					return "got closed, want open access"
				}
				return ""
			}},
		{name: "wrong arg count", args: []string{"create"}, wantErr: "got 0 arguments, want 1"},
		{name: "unknown flag", args: []string{"create", tIQN, "--frobnicate"}, wantErr: "unknown flag: --frobnicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "target.yaml")
			for _, s := range tt.setup {
				mustTargetCLI(t, path, s...)
			}
			_, err := runTargetCLI(t, path, tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				if !errors.Is(err, errUsage) {
					t.Fatalf("got error %v, want a usage error (exit status 2)", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want success", err)
			}
			if msg := tt.check(loadTargetConfig(t, path)); msg != "" {
				t.Fatal(msg)
			}
		})
	}
}

func TestTargetLUNCreateReportsNumber(t *testing.T) {
	path := filepath.Join(t.TempDir(), "target.yaml")
	for _, s := range base {
		mustTargetCLI(t, path, s...)
	}
	got := mustTargetCLI(t, path, "lun", "create", tIQN, "disk0")
	if want := "target " + tIQN + ": LUN 1 -> backstore disk0\n"; got != want {
		t.Fatalf("lun create output: got %q, want %q", got, want)
	}
}

func TestTargetCLIRefusalKeepsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "target.yaml")
	for _, s := range base {
		mustTargetCLI(t, path, s...)
	}
	before, _ := os.ReadFile(path)
	if _, err := runTargetCLI(t, path, "backstore", "delete", "disk0"); err == nil {
		t.Fatal("backstore delete of a mapped backstore: got success, want refusal")
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("a refused edit changed the saved configuration")
	}
}
