package multipath

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
)

// When no path is ready but some lead to a target port group in ALUA standby or
// unavailable (ghost paths), the map does what Linux does when dm-multipath turns to
// such a path group (scsi_dh_alua's activate): if the logical unit takes explicit
// ALUA, it sends SET TARGET PORT GROUPS through the best ghost path to make that
// group active/optimized, reads the states again and sends I/O there. Media access
// is never sent to a ghost path itself: SPC-4 5.15.2.4.4 has a port in standby refuse
// it with NOT READY 04/0B (what rampart's target answers), and Linux's ALUA handler
// fails such I/O before sending it. With implicit ALUA only (TPGS 01b: rampart's
// target, and the default of most arrays' failover modes) only the target can change
// the state: I/O queues for the no_path_retry window, the checker (and the ALUA-changed
// unit attention) notices a group that becomes active, and past the window I/O fails
// with an error that says the paths left are in standby and why the map cannot use
// them. See docs/decisions/2026-12-03-initiator-logout-portal-alua-standby.md.

// activateStandby is called by I/O that found no usable path: at most once per
// polling interval, it tries the ghost paths in the background (tryStandby).
func (m *Map) activateStandby() {
	m.mu.Lock()
	if !m.standbyAt.IsZero() && time.Since(m.standbyAt) < m.cfg.PollingInterval {
		m.mu.Unlock()
		return
	}
	m.standbyAt = time.Now()
	m.mu.Unlock()
	if m.ctx.Err() != nil || !m.standbyBusy.CompareAndSwap(false, true) {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.standbyBusy.Store(false)
		why := m.tryStandby()
		m.mu.Lock()
		old := m.standbyWhy
		m.standbyWhy = why
		m.mu.Unlock()
		if why != "" && why != old {
			m.log.Warn("no active path left; the paths in ALUA standby cannot be used", "why", why)
		}
	}()
}

// tryStandby makes the best ghost path's port group active when the target allows
// it. It returns "" when a path became usable (or there is no ghost path), and else
// why none could be used.
func (m *Map) tryStandby() string {
	var ghosts []*path
	for _, p := range m.paths {
		if p.live() && p.stateIs(PathGhost) && p.conn().Session() != nil {
			ghosts = append(ghosts, p)
		}
	}
	sort.SliceStable(ghosts, func(a, b int) bool { return m.prioOf(ghosts[a]) > m.prioOf(ghosts[b]) })
	var why []string
	for _, p := range ghosts {
		p.mu.Lock()
		info := p.alua
		p.mu.Unlock()
		where := fmt.Sprintf("path %s (target port group %d, %s)", p.url, info.Port.Group, info.State)
		switch {
		case !info.Supported || info.State.Active():
			continue // ghost for a NOT READY answer; the checker reads its state again
		case info.State == initiator.ALUATransitioning:
			why = append(why, where+": the group is in transition; waiting for the target")
			continue
		case !info.Explicit:
			why = append(why, where+": the target allows implicit ALUA only (no SET TARGET PORT GROUPS), so only the target can make a group active")
			continue
		}
		m.log.Warn("no active path left: asking the target to make a standby port group active (SET TARGET PORT GROUPS)",
			"path", p.url.String(), "group", info.Port.Group, "state", info.State.String())
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.PollingInterval+m.cfg.Session.NopTimeout)
		err := initiator.SetTargetPortGroups(ctx, p.conn(), p.url.LUN, info.Port.Group, initiator.ALUAActiveOptimized)
		if err == nil {
			now, perr := initiator.ProbeALUA(ctx, p.conn(), p.url.LUN)
			m.applyALUA(p, now, perr, true)
			switch {
			case perr != nil:
				err = perr
			case !now.State.Active():
				err = fmt.Errorf("the group is %s after SET TARGET PORT GROUPS", now.State)
			default:
				cancel()
				m.log.Info("standby port group made active", "path", p.url.String(), "group", info.Port.Group, "state", now.State.String())
				return ""
			}
		}
		cancel()
		why = append(why, fmt.Sprintf("%s: %v", where, err))
	}
	return strings.Join(why, "; ")
}
