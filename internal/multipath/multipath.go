// Package multipath merges several paths to one LUN into one blockdev.Device, as
// dm-multipath does for the kernel.
//
// Paths are sorted into path groups by the grouping policy: failover (one path per
// group), multibus (every path in one group) or group_by_prio (paths grouped by their
// priority, which comes from the ALUA state of their target port group: 50 for
// active/optimized, 10 active/non-optimized, 1 standby, 0 otherwise). Groups are used
// best priority first: commands go to the active group, and within it to the path the
// selector picks (round-robin, queue-length: fewest commands in flight, service-time:
// fewest bytes in flight). A command whose path fails is retried on another path.
//
// Every path is an initiator.Client, which logs in again by itself when its connection
// drops. A path checker probes every path on a polling interval (TEST UNIT READY, and
// the ALUA state), verifies the LUN identity of every new login before the path is
// used again, and applies the failback rule (immediate, manual or after a delay). When
// no path is left, I/O queues for no_path_retry checker intervals (or forever, with
// queue_if_no_path) and then fails.
//
// Paths are grouped by LUN identity (VPD 0x83): a path that reports another identity
// than the first is refused, so two different LUNs are never merged.
//
// When only paths to ALUA standby (or unavailable) port groups are left, media access
// is not sent to them: with explicit ALUA the map asks the target to make such a group
// active (SET TARGET PORT GROUPS), with implicit ALUA only it waits for the target,
// within the no_path_retry window (standby.go). LogoutPortal and LoginPortal take the
// paths through one portal out of a running map and back (`rampart iscsi logout -p`).
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
	// Failover uses one path at a time: each path is its own group, ordered by
	// priority and then in the order given.
	Failover Policy = "failover"
	// Multibus spreads commands over every healthy path (one group).
	Multibus Policy = "multibus"
	// GroupByPrio groups paths of equal priority (ALUA state) and uses the best group.
	GroupByPrio Policy = "group_by_prio"
)

// Selector picks a path within the active group.
type Selector string

const (
	RoundRobin  Selector = "round-robin"
	QueueLength Selector = "queue-length"
	ServiceTime Selector = "service-time"
)

// FastIOFailOff, as Config.FastIOFail, leaves each path's session replacement timeout
// in charge of how long a command waits for its own path to log in again.
const FastIOFailOff = time.Duration(-1)

// Config describes a multipath map.
type Config struct {
	Name string // the map's alias, e.g. "mpatha"
	// Alias, when set, names the map from its LUN's WWID once a path has reported it
	// (see Bind and the bindings file); a refusal fails Open.
	Alias    func(wwid string) (string, error)
	URLs     []string // one iscsi:// URL per path, all to the same LUN
	Policy   Policy
	Selector Selector // default service-time, as multipath-tools
	// PollingInterval is how often the checker probes each path (default 2 s).
	PollingInterval time.Duration
	// NoPathRetry is how many polling intervals I/O queues when every path is down
	// before it fails; QueueIfNoPath queues forever instead.
	NoPathRetry   int
	QueueIfNoPath bool
	// Failback: 0 is immediate; a positive duration waits that long after a better
	// path group returns; ManualFailback never switches back by itself.
	Failback       time.Duration
	ManualFailback bool
	// FastIOFail is how long a command caught by a dropped connection waits for its
	// path to log in again before it is failed over to another path: 0 (default) at
	// once; FastIOFailOff uses Session.ReplacementTimeout (multipath.conf's
	// fast_io_fail_tmo, which multipathd writes into open-iscsi's recovery timeout).
	FastIOFail time.Duration
	// Session options for every path (initiator name, CHAP, digests, NOP timing,
	// replacement timeout). LoginTimeout defaults to the polling interval, at least 5 s.
	Session initiator.Options
	Logger  *slog.Logger

	// dial opens a path; tests replace it to script a target's answers.
	dial func(ctx context.Context, o initiator.Options) pathConn
}

// pathConn is what the map needs of a path's session: an initiator.Client.
type pathConn interface {
	initiator.Commander
	Session() *initiator.Session
	Logins() uint64
	Changed() <-chan struct{}
	Status() initiator.SessionStatus
	Close() error
}

// PathState is a path's health as the checker last saw it (multipath -ll's checker
// state): ready, faulty, or ghost (reachable, but its port is in ALUA standby,
// unavailable or transitioning).
type PathState string

const (
	PathReady  PathState = "ready"
	PathFaulty PathState = "faulty"
	PathGhost  PathState = "ghost"
)

type path struct {
	url      initiator.URL
	opts     initiator.Options // the session options the path was opened with
	c        pathConn          // replaced only while the path is logged out (LoginPortal)
	watched  chan struct{}     // closed when the path's watcher returns
	changed  func()            // told of every state change (Map.Updates)
	verifyMu sync.Mutex        // one identity check at a time

	mu       sync.Mutex
	state    PathState
	since    time.Time
	lastErr  string
	verified uint64 // the login (Client.Logins) whose identity was checked
	alua     initiator.ALUAInfo
	prio     int
	// loggedOut: the path was logged out on request (LogoutPortal); it is no longer
	// part of the map's groups or status, and its session is closed.
	loggedOut bool

	ios           atomic.Int64
	inflight      atomic.Int64
	inflightBytes atomic.Int64
}

// usable reports whether commands may go to the path.
func (p *path) usable() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == PathReady && !p.loggedOut
}

// conn is the path's session. It changes only when a logged-out path logs in again.
func (p *path) conn() pathConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.c
}

// live reports whether the path belongs to the map (it was not logged out).
func (p *path) live() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.loggedOut
}

func (p *path) markFailed(err error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.lastErr = err.Error()
	}
	if p.state == PathFaulty {
		return false
	}
	p.state, p.since = PathFaulty, time.Now()
	p.changed()
	return true
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

	mu       sync.Mutex
	id       string
	groups   [][]int // path indexes by group, best group first
	active   int     // index into groups of the group in use
	betterAt time.Time
	changed  chan struct{} // closed and replaced whenever a path comes back
	rr       atomic.Uint64
	aluaBusy atomic.Bool
	// standby*: the last attempt to use ghost paths when no path was ready (standby.go)
	standbyBusy atomic.Bool
	standbyAt   time.Time
	standbyWhy  string
	updates     chan struct{} // a token whenever a path or group changes state
	wg          sync.WaitGroup
}

// ErrNoPath is the error of I/O that found no path within the no_path_retry window.
var ErrNoPath = errors.New("multipath: no path available")

func (cfg *Config) defaults() error {
	if len(cfg.URLs) == 0 {
		return errors.New("multipath: no path given")
	}
	if cfg.Policy == "" {
		cfg.Policy = Failover
	}
	switch cfg.Policy {
	case Failover, Multibus, GroupByPrio:
	default:
		return fmt.Errorf("multipath: policy %q: want failover, multibus or group_by_prio", cfg.Policy)
	}
	if cfg.Selector == "" {
		cfg.Selector = ServiceTime
	}
	switch cfg.Selector {
	case RoundRobin, QueueLength, ServiceTime:
	default:
		return fmt.Errorf("multipath: selector %q: want round-robin, queue-length or service-time", cfg.Selector)
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
	if cfg.Session.LoginTimeout == 0 {
		// Short enough that a path whose link comes back is tried again soon, long
		// enough for a login on a loaded machine.
		cfg.Session.LoginTimeout = max(cfg.PollingInterval, 5*time.Second)
	}
	switch {
	case cfg.FastIOFail == 0:
		cfg.Session.ReplacementTimeout = -1
	case cfg.FastIOFail > 0:
		cfg.Session.ReplacementTimeout = cfg.FastIOFail
	}
	if cfg.Session.Logger == nil {
		cfg.Session.Logger = cfg.Logger
	}
	if cfg.dial == nil {
		cfg.dial = func(ctx context.Context, o initiator.Options) pathConn { return initiator.NewClient(ctx, o) }
	}
	return nil
}

// Open logs in to every path, checks that they lead to one LUN and starts the checker.
// Paths that cannot be reached now start faulty; they keep logging in in the
// background and join once they do. At least one must work.
func Open(ctx context.Context, cfg Config) (*Map, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	m := &Map{cfg: cfg, log: cfg.Logger.With("map", cfg.Name), changed: make(chan struct{}), updates: make(chan struct{}, 1)}
	m.ctx, m.cancel = context.WithCancel(ctx)
	for i, raw := range cfg.URLs {
		u, err := initiator.ParseURL(raw)
		if err != nil {
			m.cancel()
			return nil, err
		}
		if i > 0 && u.LUN != m.lun {
			m.cancel()
			return nil, fmt.Errorf("multipath: path %s addresses LUN %d, the first path LUN %d", u, u.LUN, m.lun)
		}
		m.lun = u.LUN
		m.paths = append(m.paths, &path{url: u, state: PathFaulty, since: time.Now(), changed: m.signal})
	}
	for _, p := range m.paths {
		o := cfg.Session
		o.Portal, o.TargetName = p.url.Portal, p.url.Target
		if p.url.CHAP != nil {
			o.CHAP = p.url.CHAP
		}
		p.opts = o
		p.c = cfg.dial(m.ctx, o)
	}
	m.regroup()
	// Wait for the first login of every path (each bounded by the login timeout).
	var wg sync.WaitGroup
	errs := make([]error, len(m.paths))
	for i, p := range m.paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.firstLogin(ctx, p)
		}()
	}
	wg.Wait()
	if m.ID() == "" {
		m.Close()
		return nil, fmt.Errorf("multipath %s: no path could be opened: %w", cfg.Name, errors.Join(errs...))
	}
	if cfg.Alias != nil {
		name, err := cfg.Alias(WWID(m.ID()))
		if err != nil {
			m.Close()
			return nil, err
		}
		m.cfg.Name, m.log = name, cfg.Logger.With("map", name)
	}
	for i, err := range errs {
		if err != nil {
			m.log.Warn("path not available at start", "path", m.paths[i].url.String(), "err", err)
		}
	}
	m.regroup()
	for _, p := range m.paths {
		m.startWatch(p)
	}
	m.wg.Add(1)
	go m.checker()
	return m, nil
}

// firstLogin waits for a path's first login and verifies it.
func (m *Map) firstLogin(ctx context.Context, p *path) error {
	deadline := time.NewTimer(m.cfg.Session.LoginTimeout + time.Second)
	defer deadline.Stop()
	for p.conn().Session() == nil {
		select {
		case <-p.conn().Changed():
		case <-deadline.C:
			st := p.conn().Status()
			return fmt.Errorf("path %s: not logged in: %s", p.url, st.LastError)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return m.verify(ctx, p)
}

// Close stops the checker and logs every path out.
func (m *Map) Close() error {
	m.cancel()
	m.wg.Wait()
	for _, p := range m.paths {
		if c := p.conn(); c != nil {
			c.Close()
		}
	}
	return nil
}

// Name is the map's alias.
func (m *Map) Name() string { return m.cfg.Name }

// ID is the LUN identity every path reported (VPD 0x83).
func (m *Map) ID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id
}

// signal records that the map's state changed, for Updates.
func (m *Map) signal() {
	select {
	case m.updates <- struct{}{}:
	default:
	}
}

// Updates yields a value after the state of a path or path group changed, so that a
// status file can be rewritten at once rather than at its next tick.
func (m *Map) Updates() <-chan struct{} { return m.updates }

// notify wakes I/O waiting for a path.
func (m *Map) notify() {
	m.mu.Lock()
	m.standbyWhy = "" // a path came back: what kept ghost paths unused is news of the past
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}
