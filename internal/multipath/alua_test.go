package multipath

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
)

// scriptedALUA plays the ALUA side of a target in front of a real one: each path is
// given a target port group, REPORT TARGET PORT GROUPS answers the scripted states,
// a state change raises ASYMMETRIC ACCESS STATE CHANGED once on every path, and READ
// and WRITE to a port in standby fail NOT READY 04/0B, as SPC-4 says.
type scriptedALUA struct {
	mu     sync.Mutex
	states map[uint16]initiator.ALUAState
	ua     map[uint16]bool // group -> unit attention pending on its path
	// explicit: the LU reports TPGS 11b and takes SET TARGET PORT GROUPS (counted in
	// stpg); else TPGS 01b, and SET TARGET PORT GROUPS is an ILLEGAL REQUEST.
	explicit bool
	stpg     int
}

func (a *scriptedALUA) set(states map[uint16]initiator.ALUAState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.states = states
	for g := range states {
		a.ua[g] = true
	}
}

// aluaPath is one path through a scriptedALUA: a real Client, and the answers above.
type aluaPath struct {
	*initiator.Client
	a     *scriptedALUA
	group uint16
	dead  atomic.Bool // the path's link is down: no session, commands fail
}

func (p *aluaPath) Session() *initiator.Session {
	if p.dead.Load() {
		return nil
	}
	return p.Client.Session()
}

func checkCondition(key, asc, ascq byte) initiator.Result {
	return initiator.Result{Status: 0x02, Sense: []byte{0x72, key, asc, ascq}}
}

func (p *aluaPath) Execute(ctx context.Context, lun uint64, cdb, out, in []byte) (initiator.Result, error) {
	if p.dead.Load() {
		return initiator.Result{}, fmt.Errorf("path to group %d: %w: link down", p.group, initiator.ErrSessionFailed)
	}
	if cdb[0] == 0xa4 && cdb[1]&0x1f == 0x0a { // SET TARGET PORT GROUPS
		p.a.mu.Lock()
		defer p.a.mu.Unlock()
		if !p.a.explicit {
			return checkCondition(0x5, 0x24, 0x00), nil
		}
		p.a.stpg++
		for d := out[4:]; len(d) >= 4; d = d[4:] {
			p.a.states[binary.BigEndian.Uint16(d[2:])] = initiator.ALUAState(d[0] & 0x0f)
		}
		return initiator.Result{}, nil
	}
	p.a.mu.Lock()
	state := p.a.states[p.group]
	ua := p.a.ua[p.group]
	inquiry := cdb[0] == 0x12
	rtpg := cdb[0] == 0xa3 && cdb[1]&0x1f == 0x0a
	if ua && !inquiry && !rtpg {
		p.a.ua[p.group] = false
		p.a.mu.Unlock()
		return checkCondition(0x6, 0x2a, 0x06), nil
	}
	var groups []byte
	for g := uint16(1); g <= 2; g++ {
		groups = append(groups, byte(p.a.states[g]), 0x8f, 0, byte(g), 0, 0, 0, 1, 0, 0, 0, byte(g))
	}
	p.a.mu.Unlock()
	switch {
	case rtpg:
		d := binary.BigEndian.AppendUint32(nil, uint32(len(groups)))
		d = append(d, groups...)
		n := copy(in, d)
		return initiator.Result{DataIn: n}, nil
	case inquiry && cdb[1]&1 == 0:
		r, err := p.Client.Execute(ctx, lun, cdb, out, in)
		if len(in) > 5 {
			in[5] |= 0x10 // TPGS: implicit ALUA
			if p.a.explicit {
				in[5] |= 0x20 // and explicit
			}
		}
		return r, err
	case inquiry && cdb[2] == 0x83:
		r, err := p.Client.Execute(ctx, lun, cdb, out, in)
		if err != nil || r.Status != 0 {
			return r, err
		}
		// this path's port and group, after the target's own (the last one counts)
		n := 4 + int(binary.BigEndian.Uint16(in[2:]))
		port := []byte{0x51, 0x94, 0, 4, 0, 0, 0, byte(p.group), 0x51, 0x95, 0, 4, 0, 0, 0, byte(p.group)}
		if n+len(port) <= len(in) {
			copy(in[n:], port)
			binary.BigEndian.PutUint16(in[2:], uint16(n+len(port)-4))
			r.DataIn = n + len(port)
		}
		return r, err
	case (cdb[0] == 0x88 || cdb[0] == 0x8a) && !state.Active():
		return checkCondition(0x2, 0x04, 0x0b), nil
	}
	return p.Client.Execute(ctx, lun, cdb, out, in)
}

func openALUAMap(t *testing.T, policy Policy, a *scriptedALUA, tune ...func(*Config)) (*Map, *initiator.LUN) {
	t.Helper()
	u := targetURL(t)
	raw := "iscsi://" + u.Portal + "/" + u.Target + "/" + itoa(u.LUN)
	var mu sync.Mutex
	next := uint16(0)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := Config{
		Name: "mpathc", URLs: []string{raw, raw}, Policy: policy, Selector: RoundRobin,
		PollingInterval: time.Hour, NoPathRetry: 1, // only the unit attention may re-read states
		Session: initiator.Options{LoginTimeout: 5 * time.Second},
		dial: func(ctx context.Context, o initiator.Options) pathConn {
			mu.Lock()
			defer mu.Unlock()
			next++
			return &aluaPath{Client: initiator.NewClient(ctx, o), a: a, group: next}
		},
	}
	for _, f := range tune {
		f(&cfg)
	}
	m, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	dev, err := m.Device()
	if err != nil {
		t.Fatal(err)
	}
	return m, dev
}

// TestGroupByPrio: paths are grouped by their ALUA state, active/optimized first; when
// the target swaps the states, the unit attention makes the map read them again and
// I/O moves to the newly optimized path without an error.
func TestGroupByPrio(t *testing.T) {
	a := &scriptedALUA{ua: map[uint16]bool{}}
	a.set(map[uint16]initiator.ALUAState{1: initiator.ALUAActiveOptimized, 2: initiator.ALUAActiveNonOptimized})
	a.ua = map[uint16]bool{}
	m, dev := openALUAMap(t, GroupByPrio, a)

	st := m.Status(dev.Size())
	if len(st.Groups) != 2 || st.Groups[0].Prio != 50 || st.Groups[1].Prio != 10 || st.Groups[0].Status != "active" ||
		len(st.Groups[0].Paths) != 1 || st.Groups[0].Paths[0] != 0 {
		t.Fatalf("groups at start: %+v, want [path 0 prio 50 active] [path 1 prio 10]", st.Groups)
	}
	buf := bytes.Repeat([]byte{7}, 64<<10)
	for i := range 20 {
		if _, err := dev.WriteAt(buf, int64(i)*int64(len(buf))); err != nil {
			t.Fatal(err)
		}
	}
	before := m.Status(0).Paths
	if before[1].IOs != 0 || before[0].IOs < 20 {
		t.Errorf("I/O per path %d/%d, want everything on the optimized path 0", before[0].IOs, before[1].IOs)
	}

	a.set(map[uint16]initiator.ALUAState{1: initiator.ALUAStandby, 2: initiator.ALUAActiveOptimized})
	got := make([]byte, len(buf))
	for i := range 20 {
		if _, err := dev.ReadAt(got, int64(i)*int64(len(buf))); err != nil || !bytes.Equal(got, buf) {
			t.Fatalf("read %d after the ALUA change: %v (equal %v)", i, err, bytes.Equal(got, buf))
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st = m.Status(dev.Size())
		if len(st.Groups) == 2 && st.Groups[0].Prio == 50 && st.Groups[0].Paths[0] == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var sb strings.Builder
	Print(&sb, []Status{st})
	t.Logf("after the change:\n%s", sb.String())
	if len(st.Groups) != 2 || st.Groups[0].Paths[0] != 1 || st.Groups[0].Status != "active" || st.Groups[1].Prio != 1 {
		t.Fatalf("groups after the change: %+v, want [path 1 prio 50 active] [path 0 prio 1]", st.Groups)
	}
	if st.Paths[0].State != PathGhost || st.Paths[0].ALUA != "standby" {
		t.Errorf("standby path: state %s alua %q, want ghost standby", st.Paths[0].State, st.Paths[0].ALUA)
	}
	if !strings.Contains(sb.String(), "prio=1 alua=standby") {
		t.Errorf("status lacks the standby path's prio and state")
	}
	ios := st.Paths[1].IOs
	if _, err := dev.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if m.Status(0).Paths[1].IOs <= ios {
		t.Error("I/O after the change did not go to the optimized path 1")
	}
}

// TestFailoverOrdersByPrio: with the failover policy each path is a group, and the
// better ALUA state comes first whatever the order of the URLs.
func TestFailoverOrdersByPrio(t *testing.T) {
	a := &scriptedALUA{ua: map[uint16]bool{}}
	a.states = map[uint16]initiator.ALUAState{1: initiator.ALUAActiveNonOptimized, 2: initiator.ALUAActiveOptimized}
	m, dev := openALUAMap(t, Failover, a)
	st := m.Status(dev.Size())
	if len(st.Groups) != 2 || st.Groups[0].Paths[0] != 1 || st.Groups[0].Prio != 50 || !st.Paths[1].Active || st.Paths[0].Active {
		t.Fatalf("failover groups: %+v paths active %v/%v, want path 1 (optimized) first and active", st.Groups, st.Paths[0].Active, st.Paths[1].Active)
	}
}

// TestStandbyLeftExplicitALUA: when the active/optimized path dies and only a path to
// a standby group is left, a target with explicit ALUA is asked (SET TARGET PORT
// GROUPS) to make that group active/optimized, and I/O carries on there without an
// error, as Linux's ALUA handler does when dm-multipath turns to a standby group.
func TestStandbyLeftExplicitALUA(t *testing.T) {
	a := &scriptedALUA{ua: map[uint16]bool{}, explicit: true}
	a.states = map[uint16]initiator.ALUAState{1: initiator.ALUAActiveOptimized, 2: initiator.ALUAStandby}
	m, dev := openALUAMap(t, GroupByPrio, a, func(c *Config) { c.PollingInterval, c.NoPathRetry = 200*time.Millisecond, 25 })
	buf := bytes.Repeat([]byte{9}, 64<<10)
	if _, err := dev.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(0); st.Paths[1].State != PathGhost || st.Groups[1].Status != "enabled" {
		t.Fatalf("standby path %s, its group %s: want ghost, enabled", st.Paths[1].State, st.Groups[1].Status)
	}
	m.paths[0].c.(*aluaPath).dead.Store(true)
	start := time.Now()
	if _, err := dev.WriteAt(buf, 64<<10); err != nil {
		t.Fatalf("write with only the standby path left: %v, want it made active and used", err)
	}
	got := make([]byte, len(buf))
	if _, err := dev.ReadAt(got, 0); err != nil || !bytes.Equal(got, buf) {
		t.Fatalf("read through the formerly standby path: %v (equal %v)", err, bytes.Equal(got, buf))
	}
	t.Logf("failover to the standby group took %v", time.Since(start))
	a.mu.Lock()
	stpg, state := a.stpg, a.states[2]
	a.mu.Unlock()
	if stpg != 1 || state != initiator.ALUAActiveOptimized {
		t.Errorf("SET TARGET PORT GROUPS sent %d times, group 2 %s; want once, active/optimized", stpg, state)
	}
	st := m.Status(dev.Size())
	var sb strings.Builder
	Print(&sb, []Status{st})
	t.Logf("after the failover:\n%s", sb.String())
	if p := st.Paths[1]; p.State != PathReady || !p.Active || p.Prio != 50 || p.ALUA != "active/optimized" {
		t.Errorf("path 1 after the failover: %s active %v prio %d alua %s; want active ready, prio 50, active/optimized", p.State, p.Active, p.Prio, p.ALUA)
	}
}

// TestStandbyLeftImplicitALUA: with implicit ALUA only, the initiator cannot change
// the standby group's state: I/O with only the standby path left queues for the
// no_path_retry window and fails with ErrNoPath saying why (not a hang, and the
// standby path is never sent media access); when the target makes the group active
// by itself within the window, the queued I/O succeeds.
func TestStandbyLeftImplicitALUA(t *testing.T) {
	a := &scriptedALUA{ua: map[uint16]bool{}}
	a.states = map[uint16]initiator.ALUAState{1: initiator.ALUAActiveOptimized, 2: initiator.ALUAStandby}
	const polling, retries = 200 * time.Millisecond, 5
	m, dev := openALUAMap(t, GroupByPrio, a, func(c *Config) { c.PollingInterval, c.NoPathRetry = polling, retries })
	buf := bytes.Repeat([]byte{3}, 64<<10)
	if _, err := dev.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	m.paths[0].c.(*aluaPath).dead.Store(true)
	ios := m.Status(0).Paths[1].IOs
	start := time.Now()
	_, err := dev.WriteAt(buf, 0)
	el := time.Since(start)
	if !errors.Is(err, ErrNoPath) || !strings.Contains(err.Error(), "standby") || !strings.Contains(err.Error(), "implicit ALUA only") {
		t.Fatalf("write with only a standby path left (implicit ALUA): %v; want ErrNoPath naming the standby group and implicit ALUA", err)
	}
	t.Logf("error after %v: %v", el, err)
	if window := retries * polling; el < window || el > window+2*time.Second {
		t.Errorf("the write failed after %v, want after the no_path_retry window of %v", el, window)
	}
	if got := m.Status(0).Paths[1].IOs; got != ios {
		t.Errorf("%d commands went to the standby path, want none", got-ios)
	}

	go func() { // the target moves the standby group to active/optimized by itself
		time.Sleep(2 * polling)
		a.set(map[uint16]initiator.ALUAState{1: initiator.ALUAActiveOptimized, 2: initiator.ALUAActiveOptimized})
	}()
	if _, err := dev.WriteAt(buf, 0); err != nil {
		t.Fatalf("write while the target makes the standby group active: %v, want success", err)
	}
	if st := m.Status(0).Paths[1]; st.State != PathReady || !st.Active {
		t.Errorf("path 1 after the target's transition: %s active %v, want active ready", st.State, st.Active)
	}
}
