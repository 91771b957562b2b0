// Package multipath merges several paths to one LUN into one blockdev.Device, as
// dm-multipath does for the kernel: commands go to a healthy path chosen by the policy
// (failover: one path at a time, in priority order; multibus: round-robin over every
// healthy path); a command whose path fails is retried on another path; a path checker
// probes every path on a polling interval (TEST UNIT READY), logs failed paths in again
// and fails back by the failback rule; when no path is left, I/O queues for
// no_path_retry checker intervals (or forever, with queue_if_no_path) and then fails.
//
// Paths are grouped by LUN identity (VPD 0x83): a path that reports another identity
// than the first is refused, so two different LUNs are never merged.
package multipath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
)

// Policy is the path grouping policy.
type Policy string

const (
	// Failover uses one path at a time: the first healthy one in the order given.
	Failover Policy = "failover"
	// Multibus spreads commands round-robin over every healthy path.
	Multibus Policy = "multibus"
)

// Config describes a multipath map.
type Config struct {
	Name   string   // the map's alias, e.g. "mpatha"
	URLs   []string // one iscsi:// URL per path, all to the same LUN
	Policy Policy
	// PollingInterval is how often the checker probes each path (default 2 s).
	PollingInterval time.Duration
	// NoPathRetry is how many polling intervals I/O queues when every path is down
	// before it fails; QueueIfNoPath queues forever instead.
	NoPathRetry   int
	QueueIfNoPath bool
	// Failback: 0 is immediate; a positive duration waits that long after a better
	// path returns; ManualFailback never switches back by itself.
	Failback       time.Duration
	ManualFailback bool
	// Session options for every path (initiator name, CHAP, digests, NOP timing).
	Session initiator.Options
	Logger  *slog.Logger
}

// PathState is a path's health as the checker last saw it.
type PathState string

const (
	PathReady  PathState = "ready"
	PathFaulty PathState = "faulty"
)

type path struct {
	url     initiator.URL
	mu      sync.Mutex
	s       *initiator.Session // nil while disconnected
	state   PathState
	since   time.Time
	lastErr string
	ios     atomic.Int64
}

func (p *path) session() *initiator.Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != PathReady {
		return nil
	}
	return p.s
}

func (p *path) markFailed(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == PathFaulty {
		return
	}
	p.state, p.since = PathFaulty, time.Now()
	if err != nil {
		p.lastErr = err.Error()
	}
	if p.s != nil {
		go p.s.Close()
		p.s = nil
	}
}

// Map is a multipath device: a Commander over every path, and through Device a
// blockdev.Device.
type Map struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	lun    uint64
	paths  []*path
	id     string

	mu       sync.Mutex
	current  int // failover: index of the path in use
	rr       atomic.Uint64
	changed  chan struct{} // closed and replaced whenever a path comes back
	betterAt time.Time     // when a better path than current came back (delayed failback)
	wg       sync.WaitGroup
}

// ErrNoPath is the error of I/O that found no path within the no_path_retry window.
var ErrNoPath = errors.New("multipath: no path available")

// Open connects every path, checks that they lead to one LUN and starts the checker.
// Paths that cannot be reached now start faulty and are retried by the checker; at
// least one must work.
func Open(ctx context.Context, cfg Config) (*Map, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("multipath: no path given")
	}
	if cfg.Policy == "" {
		cfg.Policy = Failover
	}
	if cfg.Policy != Failover && cfg.Policy != Multibus {
		return nil, fmt.Errorf("multipath: policy %q: want failover or multibus", cfg.Policy)
	}
	if cfg.PollingInterval <= 0 {
		cfg.PollingInterval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Session.NopInterval == 0 {
		cfg.Session.NopInterval = time.Second
	}
	if cfg.Session.NopTimeout == 0 {
		cfg.Session.NopTimeout = 2 * time.Second
	}
	m := &Map{cfg: cfg, log: cfg.Logger.With("map", cfg.Name), changed: make(chan struct{})}
	m.ctx, m.cancel = context.WithCancel(ctx)
	for i, raw := range cfg.URLs {
		u, err := initiator.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		if i > 0 && u.LUN != m.lun {
			return nil, fmt.Errorf("multipath: path %s addresses LUN %d, the first path LUN %d", u, u.LUN, m.lun)
		}
		m.lun = u.LUN
		m.paths = append(m.paths, &path{url: u, state: PathFaulty, since: time.Now()})
	}
	var firstErr error
	for _, p := range m.paths {
		if err := m.connect(ctx, p); err != nil {
			m.log.Warn("path not available at start", "path", p.url.String(), "err", err)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if m.id == "" {
		m.cancel()
		return nil, fmt.Errorf("multipath %s: no path could be opened: %w", cfg.Name, firstErr)
	}
	m.wg.Add(1)
	go m.checker()
	return m, nil
}

// connect logs a path in and checks its identity.
func (m *Map) connect(ctx context.Context, p *path) error {
	o := m.cfg.Session
	o.Portal, o.TargetName = p.url.Portal, p.url.Target
	if p.url.CHAP != nil {
		o.CHAP = p.url.CHAP
	}
	s, err := initiator.Dial(ctx, o)
	if err != nil {
		p.mu.Lock()
		p.lastErr = err.Error()
		p.mu.Unlock()
		return err
	}
	l, err := initiator.OpenLUN(ctx, s, p.url.LUN)
	if err != nil {
		s.Close()
		return err
	}
	m.mu.Lock()
	if m.id == "" {
		m.id = l.DeviceID()
	}
	id := m.id
	m.mu.Unlock()
	if l.DeviceID() != id {
		s.Close()
		return fmt.Errorf("path %s leads to LUN %q, not %q: refusing to merge different LUNs", p.url, l.DeviceID(), id)
	}
	p.mu.Lock()
	p.s, p.state, p.since, p.lastErr = s, PathReady, time.Now(), ""
	p.mu.Unlock()
	m.mu.Lock()
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	m.log.Info("path ready", "path", p.url.String())
	return nil
}

// Close stops the checker and logs every path out.
func (m *Map) Close() error {
	m.cancel()
	m.wg.Wait()
	for _, p := range m.paths {
		p.mu.Lock()
		if p.s != nil {
			p.s.Close()
			p.s = nil
		}
		p.mu.Unlock()
	}
	return nil
}

// ID is the LUN identity every path reported (VPD 0x83).
func (m *Map) ID() string { return m.id }
