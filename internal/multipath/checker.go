package multipath

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
)

var tur = []byte{0, 0, 0, 0, 0, 0}

// verify checks the LUN identity of a path's current login and, when it is the map's
// LUN, reads its ALUA state and puts the path in service.
func (m *Map) verify(ctx context.Context, p *path) error {
	p.verifyMu.Lock()
	defer p.verifyMu.Unlock()
	logins := p.conn().Logins()
	ctx, cancel := context.WithTimeout(ctx, m.cfg.PollingInterval+m.cfg.Session.NopTimeout)
	defer cancel()
	got, err := initiator.Identify(ctx, p.conn(), p.url.LUN)
	if err == nil && got == "" {
		err = errors.New("the LUN reports no identity (VPD 0x83): cannot tell its paths apart from another LUN's")
	}
	if err == nil {
		err = m.testUnitReady(ctx, p)
	}
	if err != nil {
		p.markFailed(err)
		return fmt.Errorf("path %s: %w", p.url, err)
	}
	m.mu.Lock()
	if m.id == "" {
		m.id = got
	}
	id := m.id
	m.mu.Unlock()
	if got != id {
		err := fmt.Errorf("path %s leads to LUN %q, not %q: refusing to merge different LUNs", p.url, got, id)
		p.markFailed(err)
		return err
	}
	info, aerr := initiator.ProbeALUA(ctx, p.conn(), p.url.LUN)
	p.mu.Lock()
	p.verified = logins
	p.lastErr = ""
	p.mu.Unlock()
	m.applyALUA(p, info, aerr, true)
	m.log.Info("path ready", "path", p.url.String(), "prio", m.prioOf(p), "alua", aluaName(info))
	return nil
}

func aluaName(info initiator.ALUAInfo) string {
	if !info.Supported {
		return "none"
	}
	return info.State.String()
}

func (m *Map) prioOf(p *path) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.prio
}

// applyALUA records a path's ALUA state and priority after a successful probe of the
// path (alive tells that TEST UNIT READY or the identity check passed), regroups the
// map when the priority changed and wakes waiting I/O when the path became usable.
func (m *Map) applyALUA(p *path, info initiator.ALUAInfo, err error, alive bool) {
	p.mu.Lock()
	oldPrio, oldState := p.prio, p.state
	if err == nil {
		p.alua = info
		p.prio = 1 // no ALUA: every path alike, as multipath-tools' const prioritizer
		if info.Supported {
			p.prio = info.State.Prio()
		}
	} else {
		m.log.Debug("ALUA probe failed; keeping the last state", "path", p.url.String(), "err", err)
	}
	if alive {
		next := PathReady
		if p.alua.Supported && !p.alua.State.Active() {
			next = PathGhost
		}
		if next != p.state {
			p.state, p.since = next, time.Now()
			p.changed()
		}
	}
	prio, state := p.prio, p.state
	p.mu.Unlock()
	if prio != oldPrio {
		m.log.Info("path priority changed", "path", p.url.String(), "from", oldPrio, "to", prio, "alua", aluaName(info))
		m.regroup()
	}
	if state == PathReady && oldState != PathReady {
		m.failback() // failback immediate: at once, not at the next checker tick
		m.notify()
	}
}

// startWatch starts the path's watcher.
func (m *Map) startWatch(p *path) {
	p.watched = make(chan struct{})
	m.wg.Add(1)
	go m.watch(p)
}

// watch follows one path's session: a drop marks the path faulty at once, and a new
// login is verified at once, without waiting for the checker. It returns when the
// path is logged out.
func (m *Map) watch(p *path) {
	defer m.wg.Done()
	defer close(p.watched)
	for {
		if !p.live() {
			return
		}
		ch := p.conn().Changed()
		if p.conn().Session() == nil {
			if p.markFailed(errors.New("connection lost: " + p.conn().Status().LastError)) {
				m.log.Warn("path faulty: connection lost", "path", p.url.String())
			}
		} else if m.needsVerify(p) {
			if err := m.verify(m.ctx, p); err != nil && m.ctx.Err() == nil {
				m.log.Warn("path not usable after login", "path", p.url.String(), "err", err)
			}
		}
		select {
		case <-ch:
		case <-m.ctx.Done():
			return
		}
	}
}

func (m *Map) needsVerify(p *path) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.verified != p.c.Logins()
}

// checker probes every path each polling interval: TEST UNIT READY and the ALUA
// state on logged-in paths (a faulty path whose probe passes is ready again), and
// applies the failback rule.
func (m *Map) checker() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.PollingInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range m.paths {
			m.check(p)
		}
		m.failback()
	}
}

func (m *Map) check(p *path) {
	if !p.live() {
		return
	}
	if p.conn().Session() == nil {
		if p.markFailed(errors.New("not logged in: " + p.conn().Status().LastError)) {
			m.log.Warn("path checker: path faulty", "path", p.url.String())
		}
		return
	}
	if m.needsVerify(p) {
		if err := m.verify(m.ctx, p); err != nil && m.ctx.Err() == nil {
			m.log.Debug("path checker: path still not usable", "path", p.url.String(), "err", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.PollingInterval+m.cfg.Session.NopTimeout)
	defer cancel()
	err := m.testUnitReady(ctx, p)
	if err != nil {
		if m.ctx.Err() == nil && p.markFailed(err) {
			m.log.Warn("path checker: path faulty", "path", p.url.String(), "err", err)
		}
		return
	}
	info, aerr := initiator.ProbeALUA(ctx, p.conn(), p.url.LUN)
	m.applyALUA(p, info, aerr, true)
}

// testUnitReady is the tur checker: nil when the LUN answers GOOD, or NOT READY
// because its target port is not active (ALUA, which the caller reads next, decides
// between ready and ghost); unit attentions are read and the command sent again.
func (m *Map) testUnitReady(ctx context.Context, p *path) error {
	for try := 0; ; try++ {
		r, err := p.conn().Execute(ctx, p.url.LUN, tur, nil, nil)
		if err != nil {
			return err
		}
		if r.Status == 0 || initiator.IsPortInactive(r) {
			return nil
		}
		key, asc, ascq := initiator.SenseOf(r)
		if initiator.IsALUAChange(r) {
			m.refreshALUA()
		}
		if try < 8 && (r.Status == 0x08 || r.Status == 0x02 && key == 0x6) { // BUSY or UNIT ATTENTION
			continue
		}
		return fmt.Errorf("test unit ready: status %#02x, sense key %#x asc/ascq %#02x/%#02x", r.Status, key, asc, ascq)
	}
}

// refreshALUA re-reads every path's ALUA state now (after the ALUA-changed unit
// attention), once at a time.
func (m *Map) refreshALUA() {
	if !m.aluaBusy.CompareAndSwap(false, true) {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.aluaBusy.Store(false)
		m.log.Info("ALUA state changed: reading every path's state")
		for _, p := range m.paths {
			if !p.live() || p.conn().Session() == nil || m.needsVerify(p) {
				continue
			}
			ctx, cancel := context.WithTimeout(m.ctx, m.cfg.PollingInterval+m.cfg.Session.NopTimeout)
			info, err := initiator.ProbeALUA(ctx, p.conn(), p.url.LUN)
			cancel()
			if err == nil {
				m.applyALUA(p, info, nil, p.stateIs(PathReady, PathGhost))
			}
		}
	}()
}

func (p *path) stateIs(states ...PathState) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range states {
		if p.state == s {
			return true
		}
	}
	return false
}

// regroup sorts the paths into groups by the policy and their priorities, best group
// first, and makes the best usable group active (with manual failback, the group of
// the path in use stays active while it is usable).
func (m *Map) regroup() {
	prio := make([]int, len(m.paths))
	var live []int // the paths not logged out
	for i, p := range m.paths {
		prio[i] = m.prioOf(p)
		if p.live() {
			live = append(live, i)
		}
	}
	var groups [][]int
	switch m.cfg.Policy {
	case Multibus:
		if len(live) > 0 {
			groups = [][]int{live}
		}
	case Failover:
		for _, i := range live {
			groups = append(groups, []int{i})
		}
	case GroupByPrio:
		index := map[int]int{} // prio -> group
		for _, i := range live {
			k, ok := index[prio[i]]
			if !ok {
				k = len(groups)
				index[prio[i]] = k
				groups = append(groups, nil)
			}
			groups[k] = append(groups[k], i)
		}
	}
	sort.SliceStable(groups, func(a, b int) bool { return prio[groups[a][0]] > prio[groups[b][0]] })

	defer m.signal()
	m.mu.Lock()
	defer m.mu.Unlock()
	var inUse []int
	if m.active < len(m.groups) {
		inUse = m.groups[m.active]
	}
	m.groups, m.active, m.betterAt = groups, 0, time.Time{}
	for i, g := range groups {
		if m.cfg.ManualFailback && len(inUse) > 0 && g[0] == inUse[0] && m.paths[g[0]].usable() {
			m.active = i
			return
		}
	}
	for i, g := range groups {
		if m.groupUsable(g) {
			m.active = i
			return
		}
	}
}

func (m *Map) groupUsable(g []int) bool {
	for _, i := range g {
		if m.paths[i].usable() {
			return true
		}
	}
	return false
}

// failback makes the best usable group active again when the failback rule allows.
func (m *Map) failback() {
	if m.cfg.ManualFailback {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	best := -1
	for i, g := range m.groups {
		if m.groupUsable(g) {
			best = i
			break
		}
	}
	if best < 0 || best >= m.active {
		m.betterAt = time.Time{}
		return
	}
	if m.betterAt.IsZero() {
		m.betterAt = time.Now()
	}
	if time.Since(m.betterAt) >= m.cfg.Failback {
		m.log.Info("failback", "to", m.paths[m.groups[best][0]].url.String())
		m.active, m.betterAt = best, time.Time{}
		m.signal()
	}
}
