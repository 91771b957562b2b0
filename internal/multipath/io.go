package multipath

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
)

var _ initiator.Commander = (*Map)(nil)

// pick returns a usable path of the active group chosen by the selector; when the
// active group has none, the next usable group becomes active (failover). nil when no
// path is usable.
func (m *Map) pick(size int) *path {
	m.mu.Lock()
	groups, active := m.groups, m.active
	m.mu.Unlock()
	if active < len(groups) {
		if p := m.selectPath(groups[active], size); p != nil {
			return p
		}
	}
	for i, g := range groups {
		if p := m.selectPath(g, size); p != nil {
			m.mu.Lock()
			if m.active == active && i != active {
				m.active = i
				m.log.Warn("failover", "to", p.url.String())
				m.signal()
			}
			m.mu.Unlock()
			return p
		}
	}
	return nil
}

// selectPath is the path selector within one group: round-robin, queue-length (fewest
// commands in flight) or service-time (fewest bytes in flight counting this command:
// dm's service-time with every path's relative throughput equal). Ties go round-robin.
func (m *Map) selectPath(g []int, size int) *path {
	var buf [8]*path
	usable := buf[:0]
	for _, i := range g {
		if p := m.paths[i]; p.usable() {
			usable = append(usable, p)
		}
	}
	if len(usable) == 0 {
		return nil
	}
	start := int(m.rr.Add(1) % uint64(len(usable)))
	if m.cfg.Selector == RoundRobin {
		return usable[start]
	}
	var best *path
	var bestCost int64
	for k := range usable {
		p := usable[(start+k)%len(usable)]
		cost := p.inflight.Load()
		if m.cfg.Selector == ServiceTime {
			cost = p.inflightBytes.Load() + int64(size)
		}
		if best == nil || cost < bestCost {
			best, bestCost = p, cost
		}
	}
	return best
}

// Execute runs a command on a path the policy and selector choose. A command whose
// path fails, or whose target port is not active (ALUA standby, unavailable or in
// transition), is retried on another path; with no usable path it waits up to the
// no_path_retry window. The ALUA-changed unit attention makes every path's state be
// read again.
func (m *Map) Execute(ctx context.Context, lun uint64, cdb, out, in []byte) (initiator.Result, error) {
	var noPathSince time.Time
	size := len(out) + len(in)
	for {
		if p := m.pick(size); p != nil {
			p.ios.Add(1)
			p.inflight.Add(1)
			p.inflightBytes.Add(int64(size))
			r, err := p.conn().Execute(ctx, lun, cdb, out, in)
			p.inflight.Add(-1)
			p.inflightBytes.Add(-int64(size))
			switch {
			case err != nil && errors.Is(err, initiator.ErrSessionFailed):
				if p.markFailed(err) {
					m.log.Warn("path failed", "path", p.url.String(), "err", err)
				}
				continue
			case err == nil && initiator.IsPortInactive(r):
				p.mu.Lock()
				if p.state == PathReady {
					p.state, p.since = PathGhost, time.Now()
					p.changed()
				}
				p.mu.Unlock()
				m.log.Warn("path's target port is not active: trying another path", "path", p.url.String())
				m.refreshALUA()
				continue
			case err == nil && initiator.IsALUAChange(r):
				m.refreshALUA()
			}
			return r, err
		}
		if noPathSince.IsZero() {
			noPathSince = time.Now()
			m.log.Warn("no path: queueing I/O")
		}
		m.activateStandby()
		if !m.cfg.QueueIfNoPath && time.Since(noPathSince) >= time.Duration(m.cfg.NoPathRetry)*m.cfg.PollingInterval {
			m.mu.Lock()
			why := m.standbyWhy
			m.mu.Unlock()
			if why != "" {
				return initiator.Result{}, fmt.Errorf("%s: %w (after %d retries of %v): only paths in ALUA standby or unavailable are left: %s",
					m.cfg.Name, ErrNoPath, m.cfg.NoPathRetry, m.cfg.PollingInterval, why)
			}
			return initiator.Result{}, fmt.Errorf("%s: %w (after %d retries of %v)", m.cfg.Name, ErrNoPath, m.cfg.NoPathRetry, m.cfg.PollingInterval)
		}
		m.mu.Lock()
		changed := m.changed
		m.mu.Unlock()
		select {
		case <-changed:
		case <-time.After(m.cfg.PollingInterval / 4):
		case <-ctx.Done():
			return initiator.Result{}, ctx.Err()
		case <-m.ctx.Done():
			return initiator.Result{}, fmt.Errorf("%s: closed: %w", m.cfg.Name, ErrNoPath)
		}
	}
}

// Device opens the map's LUN as a blockdev.Device.
// Unsolicited is the least initiator.Session.Unsolicited of the logged-in paths (0
// when none is), so that a write split to that size needs no R2T on any path.
func (m *Map) Unsolicited() int {
	least := 0
	for _, p := range m.paths {
		if !p.live() {
			continue
		}
		if s := p.conn().Session(); s != nil {
			if u := s.Unsolicited(); least == 0 || u < least {
				least = u
			}
		}
	}
	return least
}

func (m *Map) Device() (*initiator.LUN, error) {
	return initiator.OpenLUN(m.ctx, m, m.lun)
}
