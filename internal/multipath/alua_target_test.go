package multipath

import (
	"bytes"
	"context"
	"errors"
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
	const iqn = "iqn.2026-11.org.rampart:alua"
	srv, a, b, cfg := startTwoGroupTarget(t, iqn, target.ALUAActiveOptimized, target.ALUAActiveNonOptimized)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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

// TestStandbyLeftRampartTarget: rampart's target with an active/optimized and a
// standby portal group (implicit ALUA only). When the optimized portal's link is cut,
// the map does not send I/O to the standby port (which would answer NOT READY 04/0B):
// writes queue for the no_path_retry window and fail with ErrNoPath saying that only a
// standby group is left; when the administrator makes that group active on the
// target within the window, the queued write succeeds there.
func TestStandbyLeftRampartTarget(t *testing.T) {
	const iqn = "iqn.2026-12.org.rampart:standby"
	srv, a, b, cfg := startTwoGroupTarget(t, iqn, target.ALUAActiveOptimized, target.ALUAStandby)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	proxy := newCutProxy(t, a)
	const polling, retries = 300 * time.Millisecond, 5
	m, err := Open(ctx, Config{
		Name: "mpathe", URLs: []string{"iscsi://" + proxy.ln.Addr().String() + "/" + iqn + "/0", "iscsi://" + b + "/" + iqn + "/0"},
		Policy: GroupByPrio, PollingInterval: polling, NoPathRetry: retries,
		Session: initiator.Options{LoginTimeout: 5 * time.Second, NopInterval: 200 * time.Millisecond, NopTimeout: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dev, err := m.Device()
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte{0x3c}, 64<<10)
	if _, err := dev.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(0); st.Paths[1].State != PathGhost || st.Paths[1].ALUA != "standby" {
		t.Fatalf("path through the standby portal: %s %s, want a standby ghost", st.Paths[1].State, st.Paths[1].ALUA)
	}
	proxy.cut.Store(true)
	start := time.Now()
	_, err = dev.WriteAt(buf, 0)
	if !errors.Is(err, ErrNoPath) || !strings.Contains(err.Error(), "standby") {
		t.Fatalf("write with only the standby portal left: %v; want ErrNoPath naming the standby group", err)
	}
	t.Logf("after %v: %v", time.Since(start), err)

	go func() {
		time.Sleep(2 * polling)
		if err := srv.Apply(ctx, cfg(target.ALUAStandby, target.ALUAActiveOptimized)); err != nil {
			t.Errorf("make group 2 active: %v", err)
		}
	}()
	if _, err := dev.WriteAt(buf, 64<<10); err != nil {
		t.Fatalf("write while the administrator makes the standby group active: %v, want success", err)
	}
	got := make([]byte, len(buf))
	if _, err := dev.ReadAt(got, 0); err != nil || !bytes.Equal(got, buf) {
		t.Fatalf("read back through the newly active group: %v (equal %v)", err, bytes.Equal(got, buf))
	}
	st := m.Status(dev.Size())
	var sb strings.Builder
	Print(&sb, []Status{st})
	t.Logf("after the switch:\n%s", sb.String())
	if p := st.Paths[1]; p.State != PathReady || !p.Active || p.ALUA != "active/optimized" {
		t.Errorf("path through portal group 2: %s active %v alua %s; want active ready, active/optimized", p.State, p.Active, p.ALUA)
	}
}

// startTwoGroupTarget serves one 16 MiB LUN under iqn through two portal groups, tag 1
// on portal a in ALUA state s1 and tag 2 on portal b in state s2. cfg builds the
// configuration for other states (to apply with srv.Apply).
func startTwoGroupTarget(t *testing.T, iqn, s1, s2 string) (srv *target.Server, a, b string, cfg func(s1, s2 string) target.Config) {
	t.Helper()
	dir := t.TempDir()
	a, b = freePort(t), freePort(t)
	cfg = func(s1, s2 string) target.Config {
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
	srv, err := target.New(target.Options{Config: cfg(s1, s2),
		StateDir: filepath.Join(dir, "state"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, a, b, cfg
}
