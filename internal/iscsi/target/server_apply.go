package target

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/scsi"
	"github.com/rampart-storage/rampart/internal/volume"
)

// unit is an opened backstore: its volume and logical unit.
type unit struct {
	bs  Backstore
	dev blockdev.Device
	lu  *scsi.LogicalUnit
}

func (u *unit) close() error {
	err := u.lu.Close()
	if c, ok := u.dev.(io.Closer); ok {
		if cerr := c.Close(); cerr != nil && err == nil && !errors.Is(cerr, io.ErrClosedPipe) {
			err = cerr
		}
	}
	return err
}

// targetState is a target of the applied configuration with its resolved LUNs.
type targetState struct {
	cfg    Target
	luns   map[uint64]*unit
	ports  map[string]scsi.TargetPort // by portal ADDR:PORT
	groups []scsi.PortGroup
}

// acl returns the ACL of initiator, or nil.
func (t *targetState) acl(initiator string) *ACL {
	for i := range t.cfg.ACLs {
		if t.cfg.ACLs[i].InitiatorIQN == initiator {
			return &t.cfg.ACLs[i]
		}
	}
	return nil
}

// portOf returns the target port of portal p; t may be nil.
func (t *targetState) portOf(p string) (scsi.TargetPort, bool) {
	if t == nil {
		return scsi.TargetPort{}, false
	}
	port, ok := t.ports[p]
	return port, ok
}

// admits reports whether initiator may log in.
func (t *targetState) admits(initiator string) bool {
	return t.cfg.OpenAccess || t.acl(initiator) != nil
}

// lunsFor builds the LUNs initiator sees, applying ACL masking.
func (t *targetState) lunsFor(initiator string) *scsi.StaticLUNs {
	lt := scsi.StaticLUNs{}
	if a := t.acl(initiator); a != nil && len(a.MappedLUNs) > 0 {
		for _, m := range a.MappedLUNs {
			if u := t.luns[m.TargetLUN]; u != nil {
				lt[m.LUN] = u.lu
			}
		}
	} else {
		for n, u := range t.luns {
			lt[n] = u.lu
		}
	}
	return &lt
}

// Apply moves the server to cfg: it opens new backstores, binds new portals, updates
// the LUNs every session sees, closes the sessions whose target or ACL went away, then
// closes the portals and backstores no longer used. Before Start it only records cfg.
func (s *Server) Apply(ctx context.Context, cfg Config) error {
	if err := Validate(cfg); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if !s.started {
		s.opts.Config = cfg
		s.mu.Unlock()
		return nil
	}
	defer s.mu.Unlock()

	// Portals first: a portal that cannot be bound fails Apply before anything changed.
	want := map[string]bool{}
	for _, t := range cfg.Targets {
		for _, pg := range t.PortalGroups {
			for _, p := range pg.Portals {
				want[p] = true
			}
		}
	}
	var bound []string
	for p := range want {
		if s.portals[p] != nil {
			continue
		}
		if err := s.listen(p); err != nil {
			for _, b := range bound {
				s.portals[b].ln.Close()
				delete(s.portals, b)
			}
			return err
		}
		bound = append(bound, p)
	}

	// Backstores: keep unchanged ones (a new Size alone is a resize, picked up by
	// refreshSizesLocked below), open new or changed ones.
	units := map[string]*unit{}
	var opened []*unit
	for _, b := range cfg.Backstores {
		if u := s.units[b.Name]; u != nil && sameVolume(u.bs, b) {
			u.bs = b
			units[b.Name] = u
			continue
		}
		u, err := s.openUnit(ctx, b)
		if err != nil {
			for _, o := range opened {
				o.close()
			}
			return err
		}
		opened = append(opened, u)
		units[b.Name] = u
	}

	targets := map[string]*targetState{}
	var aluaChanged []*targetState
	for _, t := range cfg.Targets {
		ts := buildTarget(t, units)
		if ts.carryALUA(s.targets[t.IQN]) {
			aluaChanged = append(aluaChanged, ts)
		}
		targets[t.IQN] = ts
	}

	// Sessions: close those no longer admitted, refresh the others' LUNs.
	for ss := range s.sessions {
		if ss.discovery {
			if !chapEqual(cfg.DiscoveryCHAP, s.cfg.DiscoveryCHAP) {
				go ss.close()
			}
			continue
		}
		ts := targets[ss.targetIQN]
		if _, served := ts.portOf(ss.portal); ts == nil || !served || !ts.admits(ss.initiator) {
			s.log.Info("closing session no longer admitted", "target", ss.targetIQN, "initiator", ss.initiator)
			go ss.closeWithNotice()
			continue
		}
		ss.update(ts)
	}
	// Sessions now see the new states: tell every nexus of the changed targets.
	for _, ts := range aluaChanged {
		s.log.Info("ALUA state changed", "target", ts.cfg.IQN, "groups", ts.aluaText())
		ts.accessStateChanged()
	}

	for p, pl := range s.portals {
		if !want[p] {
			pl.ln.Close()
			delete(s.portals, p)
		}
	}
	var errs []error
	for name, u := range s.units {
		if units[name] != u {
			if err := u.close(); err != nil {
				errs = append(errs, fmt.Errorf("close backstore %s: %w", name, err))
			}
		}
	}
	s.units, s.targets, s.cfg = units, targets, cfg
	s.refreshSizesLocked()
	return errors.Join(errs...)
}

// sameVolume reports whether a and b serve the same volume the same way: they differ
// at most in Size, which only creates a missing file (and records a resize).
func sameVolume(a, b Backstore) bool {
	a.Size, b.Size = 0, 0
	return a == b
}

// RefreshSizes re-reads the size of every backstore whose volume can change size (a
// file grown with truncate, a resized block device) and raises CAPACITY DATA HAS
// CHANGED on every nexus of the logical units whose size changed. Apply does it too.
func (s *Server) RefreshSizes() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.refreshSizesLocked()
}

func (s *Server) refreshSizesLocked() {
	for name, u := range s.units {
		r, ok := u.dev.(blockdev.Refresher)
		if !ok {
			continue
		}
		old := u.dev.Size()
		n, err := r.Refresh()
		if err != nil {
			s.log.Warn("backstore size not refreshed", "backstore", name, "err", err)
			continue
		}
		if n != old {
			s.log.Info("backstore size changed", "backstore", name, "from", old, "to", n)
			u.lu.CapacityChanged()
		}
	}
}

func chapEqual(a, b *CHAP) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func buildTarget(t Target, units map[string]*unit) *targetState {
	ts := &targetState{cfg: t, luns: map[uint64]*unit{}, ports: map[string]scsi.TargetPort{}}
	for _, l := range t.LUNs {
		ts.luns[l.LUN] = units[l.Backstore]
	}
	for i, pg := range t.PortalGroups {
		port := scsi.TargetPort{
			Name:       fmt.Sprintf("%s,t,0x%04x", t.IQN, pg.Tag),
			RelativeID: uint16(i + 1),
			GroupID:    pg.Tag,
		}
		for _, p := range pg.Portals {
			ts.ports[p] = port
		}
		st, _ := scsi.ParsePortGroupState(pg.ALUA) // Validate checked it
		ts.groups = append(ts.groups, scsi.PortGroup{ID: pg.Tag, State: st, PortIDs: []uint16{port.RelativeID}})
	}
	return ts
}

// carryALUA compares the port group states of t with those of old, the same target
// in the configuration served so far (nil if new). A group whose state changed, or
// changed before, is marked Altered (RTPG status code 02h). It reports whether any
// state changed.
func (t *targetState) carryALUA(old *targetState) bool {
	if old == nil {
		return false
	}
	changed := false
	for i := range t.groups {
		g := &t.groups[i]
		for _, o := range old.groups {
			if o.ID != g.ID {
				continue
			}
			if o.State != g.State {
				changed, g.Altered = true, true
			} else {
				g.Altered = o.Altered
			}
		}
	}
	return changed
}

// accessStateChanged raises ASYMMETRIC ACCESS STATE CHANGED on every nexus of the
// target's logical units through the target's ports.
func (t *targetState) accessStateChanged() {
	var names []string
	for _, p := range t.ports {
		if !slices.Contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	seen := map[*scsi.LogicalUnit]bool{}
	for _, u := range t.luns {
		if u != nil && !seen[u.lu] {
			seen[u.lu] = true
			u.lu.AccessStateChanged(names...)
		}
	}
}

// aluaText lists the port group states, for logs: "1=active-optimized 2=standby".
func (t *targetState) aluaText() string {
	var b []byte
	for i, g := range t.groups {
		if i > 0 {
			b = append(b, ' ')
		}
		b = fmt.Appendf(b, "%d=%s", g.ID, g.State)
	}
	return string(b)
}

func (s *Server) openUnit(ctx context.Context, b Backstore) (*unit, error) {
	dev, err := volume.Open(ctx, b.Volume, volume.Options{
		ReadOnly:  b.ReadOnly,
		BlockSize: b.BlockSize,
		Create:    b.Size > 0,
		Size:      b.Size,
	})
	if err != nil {
		return nil, fmt.Errorf("open backstore %s volume %s: %w", b.Name, b.Volume, err)
	}
	serial := b.Serial
	if serial == "" {
		sum := sha256.Sum256([]byte(b.Volume))
		serial = hex.EncodeToString(sum[:8])
	}
	var prPath string
	if s.opts.StateDir != "" {
		prPath = filepath.Join(s.opts.StateDir, "pr-"+b.Name+".json")
	}
	lu, err := scsi.NewLogicalUnit(dev, scsi.LUConfig{
		Serial:      serial,
		PRStatePath: prPath,
		Logger:      s.log.With("backstore", b.Name),
	})
	if err != nil {
		if c, ok := dev.(io.Closer); ok {
			c.Close()
		}
		return nil, fmt.Errorf("backstore %s logical unit: %w", b.Name, err)
	}
	return &unit{bs: b, dev: dev, lu: lu}, nil
}

func sortedPortals(m map[string]*portal) []*portal {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]*portal, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}
