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

// lunTable is what one session sees: a scsi.LUNMap.
type lunTable struct {
	m    map[uint64]*scsi.LogicalUnit
	list []uint64
}

var _ scsi.LUNMap = (*lunTable)(nil)

func (l *lunTable) Lookup(lun uint64) *scsi.LogicalUnit { return l.m[lun] }
func (l *lunTable) LUNs() []uint64                      { return l.list }

// lunsFor builds the LUN table of initiator, applying ACL masking.
func (t *targetState) lunsFor(initiator string) *lunTable {
	lt := &lunTable{m: map[uint64]*scsi.LogicalUnit{}}
	if a := t.acl(initiator); a != nil && len(a.MappedLUNs) > 0 {
		for _, m := range a.MappedLUNs {
			if u := t.luns[m.TargetLUN]; u != nil {
				lt.m[m.LUN] = u.lu
			}
		}
	} else {
		for n, u := range t.luns {
			lt.m[n] = u.lu
		}
	}
	for n := range lt.m {
		lt.list = append(lt.list, n)
	}
	slices.Sort(lt.list)
	return lt
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

	// Backstores: keep unchanged ones, open new or changed ones.
	units := map[string]*unit{}
	var opened []*unit
	for _, b := range cfg.Backstores {
		if u := s.units[b.Name]; u != nil && u.bs == b {
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
	for _, t := range cfg.Targets {
		targets[t.IQN] = buildTarget(t, units)
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
	return errors.Join(errs...)
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
		ts.groups = append(ts.groups, scsi.PortGroup{ID: pg.Tag, State: scsi.ALUAActiveOptimized, PortIDs: []uint16{port.RelativeID}})
	}
	return ts
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
