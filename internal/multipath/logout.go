package multipath

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
)

// ErrLastPath is the error of a logout that would leave the map without a path: end
// the map (Close) instead.
var ErrLastPath = errors.New("multipath: logging out would leave the map without a path")

// LogoutPortal logs out the map's paths through one portal of one target (HOST:PORT,
// as their session status spells it), as `iscsiadm -m node -T IQN -p PORTAL --logout`
// removes one session and dm-multipath the path over it: the paths leave the path
// groups at once, so that new commands go to the other paths; commands already on
// them may finish until ctx ends; then each session sends its Logout and closes.
// The map and its other paths keep working. It returns how many paths were logged
// out (0 when none goes through the portal), or ErrLastPath, logging out nothing,
// when no other path would be left.
func (m *Map) LogoutPortal(ctx context.Context, target, portal string) (int, error) {
	var out, left []*path
	for _, p := range m.paths {
		if !p.live() {
			continue
		}
		if st := p.conn().Status(); st.Target == target && st.Portal == portal {
			out = append(out, p)
		} else {
			left = append(left, p)
		}
	}
	if len(out) == 0 {
		return 0, nil
	}
	if len(left) == 0 {
		return 0, fmt.Errorf("%s: %s at %s: %w", m.cfg.Name, target, portal, ErrLastPath)
	}
	for _, p := range out {
		p.mu.Lock()
		p.loggedOut = true
		p.mu.Unlock()
		m.log.Info("logging out path", "path", p.url.String())
	}
	m.regroup()
	m.notify()
	for _, p := range out {
		for p.inflight.Load() > 0 && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
		// A command still on the path when ctx ended fails with the session and is
		// sent again on another path by Execute.
		p.conn().Close()
		p.changed()
	}
	return len(out), nil
}

// LoginPortal logs in again the map's paths through one portal of one target that
// LogoutPortal logged out (iscsiadm's --login of a node whose session was logged
// out): each gets a new session, is verified (LUN identity, ALUA state) and rejoins
// the path groups. It returns how many paths were logged in, and an error when a
// path's first login or its verification fails within ctx or the login timeout (the
// path then stays in the map, faulty, and keeps logging in in the background). 0 and
// no error when no logged-out path goes through the portal.
func (m *Map) LoginPortal(ctx context.Context, target, portal string) (int, error) {
	var in []*path
	for _, p := range m.paths {
		if p.live() {
			continue
		}
		if p.opts.TargetName == target && initiator.NewNode(target, p.opts.Portal, 1).Portal == portal {
			in = append(in, p)
		}
	}
	var errs []error
	for _, p := range in {
		<-p.watched // the logged-out session's watcher has returned
		c := m.cfg.dial(m.ctx, p.opts)
		p.mu.Lock()
		p.c, p.loggedOut, p.verified = c, false, 0
		p.state, p.since, p.lastErr = PathFaulty, time.Now(), ""
		p.mu.Unlock()
		p.changed()
		m.log.Info("logging in path again", "path", p.url.String())
		m.regroup()
		m.startWatch(p)
		if err := m.firstLogin(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	return len(in), errors.Join(errs...)
}
