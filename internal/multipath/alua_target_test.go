package multipath

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/iscsi/target"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestGroupByPrioRampartTarget runs group_by_prio against rampart's own target with
// two portal groups: I/O goes to the active/optimized group; when the target's
// configuration swaps the states, the ALUA-changed unit attention moves I/O to the
// other group without an error and the standby path shows as a ghost.
func TestGroupByPrioRampartTarget(t *testing.T) {
	dir := t.TempDir()
	const iqn = "iqn.2026-11.org.rampart:alua"
	a, b := freePort(t), freePort(t)
	cfg := func(s1, s2 string) target.Config {
		return target.Config{
			Backstores: []target.Backstore{{Name: "disk", Volume: filepath.Join(dir, "disk.img"), Size: 16 << 20}},
			Targets: []target.Target{{
				IQN:          iqn,
				PortalGroups: []target.PortalGroup{{Tag: 1, Portals: []string{a}, ALUA: s1}, {Tag: 2, Portals: []string{b}, ALUA: s2}},
				LUNs:         []target.LUN{{LUN: 0, Backstore: "disk"}},
				OpenAccess:   true,
			}},
		}
	}
	srv, err := target.New(target.Options{Config: cfg(target.ALUAActiveOptimized, target.ALUAActiveNonOptimized),
		StateDir: filepath.Join(dir, "state"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	m, err := Open(ctx, Config{
		Name: "mpathd", URLs: []string{"iscsi://" + b + "/" + iqn + "/0", "iscsi://" + a + "/" + iqn + "/0"},
		Policy: GroupByPrio, PollingInterval: time.Hour, NoPathRetry: 1,
		Session: initiator.Options{LoginTimeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dev, err := m.Device()
	if err != nil {
		t.Fatal(err)
	}
	st := m.Status(dev.Size())
	if len(st.Groups) != 2 || st.Groups[0].Paths[0] != 1 || st.Paths[1].Prio != 50 || st.Paths[0].Prio != 10 || !st.Paths[1].Active {
		t.Fatalf("at start: groups %+v, prios %d/%d: want the optimized portal %s (path 1) first and active", st.Groups, st.Paths[0].Prio, st.Paths[1].Prio, a)
	}
	buf := bytes.Repeat([]byte{0x5a}, 128<<10)
	if _, err := dev.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(ctx, cfg(target.ALUAStandby, target.ALUAActiveOptimized)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(buf))
	for i := range 10 {
		if _, err := dev.ReadAt(got, 0); err != nil || !bytes.Equal(got, buf) {
			t.Fatalf("read %d after the states swapped: %v (equal %v)", i, err, bytes.Equal(got, buf))
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st = m.Status(dev.Size())
		if st.Paths[1].ALUA == "standby" && st.Paths[0].Prio == 50 && st.Paths[0].Active || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var sb strings.Builder
	Print(&sb, []Status{st})
	t.Logf("after the swap:\n%s", sb.String())
	if st.Groups[0].Paths[0] != 0 || st.Paths[0].Prio != 50 || !st.Paths[0].Active || st.Paths[1].State != PathGhost || st.Paths[1].ALUA != "standby" {
		t.Errorf("after the swap: want path 0 (%s) optimized and active, path 1 a standby ghost", b)
	}
}
