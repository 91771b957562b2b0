package multipath

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
)

var _ initiator.Commander = (*Map)(nil)

// pick returns a healthy path by the policy, or nil.
func (m *Map) pick() (*path, *initiator.Session) {
	n := len(m.paths)
	if m.cfg.Policy == Multibus {
		start := int(m.rr.Add(1))
		for i := range n {
			p := m.paths[(start+i)%n]
			if s := p.session(); s != nil {
				return p, s
			}
		}
		return nil, nil
	}
	m.mu.Lock()
	cur := m.current
	m.mu.Unlock()
	if s := m.paths[cur].session(); s != nil {
		return m.paths[cur], s
	}
	for i := range n { // the current path is down: the first healthy one in order
		if s := m.paths[i].session(); s != nil {
			m.mu.Lock()
			if m.current == cur {
				m.current = i
				m.log.Warn("failover", "from", m.paths[cur].url.String(), "to", m.paths[i].url.String())
			}
			m.mu.Unlock()
			return m.paths[i], s
		}
	}
	return nil, nil
}

// Execute runs a command on a healthy path; a command whose path fails is retried on
// another path, and with no path it waits up to the no_path_retry window.
func (m *Map) Execute(ctx context.Context, lun uint64, cdb, out, in []byte) (initiator.Result, error) {
	var noPathSince time.Time
	for {
		p, s := m.pick()
		if s != nil {
			p.ios.Add(1)
			r, err := s.Execute(ctx, lun, cdb, out, in)
			if err == nil || !errors.Is(err, initiator.ErrSessionFailed) {
				return r, err
			}
			p.markFailed(err)
			m.log.Warn("path failed", "path", p.url.String(), "err", err)
			continue
		}
		if noPathSince.IsZero() {
			noPathSince = time.Now()
			m.log.Warn("no path: queueing I/O")
		}
		if !m.cfg.QueueIfNoPath && time.Since(noPathSince) >= time.Duration(m.cfg.NoPathRetry)*m.cfg.PollingInterval {
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

// checker probes every path each polling interval: TEST UNIT READY on ready paths, a
// new login on faulty ones; and applies the failback rule.
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
			if s := p.session(); s != nil {
				ctx, cancel := context.WithTimeout(m.ctx, m.cfg.PollingInterval+m.cfg.Session.NopTimeout)
				_, err := initiator.Command(ctx, s, p.url.LUN, []byte{0, 0, 0, 0, 0, 0}, nil, nil)
				cancel()
				if err != nil && m.ctx.Err() == nil {
					p.markFailed(err)
					m.log.Warn("path checker: path faulty", "path", p.url.String(), "err", err)
				}
				continue
			}
			ctx, cancel := context.WithTimeout(m.ctx, m.cfg.PollingInterval)
			if err := m.connect(ctx, p); err != nil {
				m.log.Debug("path checker: path still down", "path", p.url.String(), "err", err)
			}
			cancel()
		}
		m.failback()
	}
}

// failback returns a failover map to its first healthy path when the rule allows.
func (m *Map) failback() {
	if m.cfg.Policy != Failover || m.cfg.ManualFailback {
		return
	}
	best := -1
	for i, p := range m.paths {
		if p.session() != nil {
			best = i
			break
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if best < 0 || best >= m.current {
		m.betterAt = time.Time{}
		return
	}
	if m.betterAt.IsZero() {
		m.betterAt = time.Now()
	}
	if time.Since(m.betterAt) >= m.cfg.Failback {
		m.log.Info("failback", "to", m.paths[best].url.String())
		m.current, m.betterAt = best, time.Time{}
	}
}

// Device opens the map's LUN as a blockdev.Device.
func (m *Map) Device() (*initiator.LUN, error) {
	return initiator.OpenLUN(m.ctx, m, m.lun)
}
