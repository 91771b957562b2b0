package target

// This file holds the edits the `rampart target` CLI makes to a Config, one method per
// subcommand, so that the CLI, the tests and any other tool share one code path.
// Every error names the object and wraps ErrEdit.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/rampart-storage/rampart/internal/scsi"
)

// ErrEdit is wrapped by every refused edit (unknown object, duplicate, in use).
var ErrEdit = errors.New("target: refused edit")

func editErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrEdit}, args...)...)
}

// NewSerial returns a random unit serial number: 16 hex digits.
func NewSerial() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("backstore serial: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// NormalizePortal returns ADDR:PORT for s, adding the iSCSI port 3260 when s has none.
func NormalizePortal(s string) (string, error) {
	if _, _, err := net.SplitHostPort(s); err == nil {
		if err := checkPortal(s); err != nil {
			return "", editErr("%w", err)
		}
		return s, nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	p := net.JoinHostPort(host, "3260")
	if err := checkPortal(p); err != nil {
		return "", editErr("%w", err)
	}
	return p, nil
}

// Backstore returns the backstore called name, or nil.
func (c *Config) Backstore(name string) *Backstore {
	for i := range c.Backstores {
		if c.Backstores[i].Name == name {
			return &c.Backstores[i]
		}
	}
	return nil
}

// Target returns the target iqn, or nil.
func (c *Config) Target(iqn string) *Target {
	for i := range c.Targets {
		if c.Targets[i].IQN == iqn {
			return &c.Targets[i]
		}
	}
	return nil
}

func (c *Config) mustTarget(iqn string) (*Target, error) {
	if t := c.Target(iqn); t != nil {
		return t, nil
	}
	return nil, editErr("target %s does not exist", iqn)
}

// AddBackstore adds b, generating its serial when empty.
func (c *Config) AddBackstore(b Backstore) error {
	if b.Name == "" || strings.ContainsAny(b.Name, " \t\n/") {
		return editErr("backstore %q: want a name without spaces or slashes", b.Name)
	}
	if c.Backstore(b.Name) != nil {
		return editErr("backstore %q already exists", b.Name)
	}
	if b.Serial == "" {
		s, err := NewSerial()
		if err != nil {
			return err
		}
		b.Serial = s
	}
	c.Backstores = append(c.Backstores, b)
	return nil
}

// BackstoreUsers lists where backstore name is mapped, as "target IQN LUN N".
func (c *Config) BackstoreUsers(name string) []string {
	var out []string
	for _, t := range c.Targets {
		for _, l := range t.LUNs {
			if l.Backstore == name {
				out = append(out, fmt.Sprintf("target %s LUN %d", t.IQN, l.LUN))
			}
		}
	}
	return out
}

// DeleteBackstore removes backstore name. When it is mapped as a LUN it refuses,
// saying where, unless force, which also removes those LUNs.
func (c *Config) DeleteBackstore(name string, force bool) error {
	if c.Backstore(name) == nil {
		return editErr("backstore %q does not exist", name)
	}
	if users := c.BackstoreUsers(name); len(users) > 0 {
		if !force {
			return editErr("backstore %q is mapped as %s (use --force to remove those LUNs too)", name, strings.Join(users, ", "))
		}
		for i := range c.Targets {
			t := &c.Targets[i]
			for _, l := range slices.Clone(t.LUNs) {
				if l.Backstore == name {
					t.deleteLUN(l.LUN)
				}
			}
		}
	}
	c.Backstores = slices.DeleteFunc(c.Backstores, func(b Backstore) bool { return b.Name == name })
	return nil
}

// AddTarget adds an empty target iqn. Like every edit it leaves syntax checks (iSCSI
// names, portals, CHAP lengths, LUN ranges) to Validate, which Store.Update runs.
func (c *Config) AddTarget(iqn string) error {
	if c.Target(iqn) != nil {
		return editErr("target %s already exists", iqn)
	}
	c.Targets = append(c.Targets, Target{IQN: iqn})
	return nil
}

// DeleteTarget removes target iqn; it refuses one with LUNs or ACLs unless force.
func (c *Config) DeleteTarget(iqn string, force bool) error {
	t, err := c.mustTarget(iqn)
	if err != nil {
		return err
	}
	if !force && (len(t.LUNs) > 0 || len(t.ACLs) > 0) {
		return editErr("target %s has %d LUNs and %d ACLs (use --force to delete it anyway)", iqn, len(t.LUNs), len(t.ACLs))
	}
	c.Targets = slices.DeleteFunc(c.Targets, func(t Target) bool { return t.IQN == iqn })
	return nil
}

// AddPortal adds portal (ADDR:PORT) to target iqn's portal group tag, creating it.
func (c *Config) AddPortal(iqn, portal string, tag uint16) error {
	t, err := c.mustTarget(iqn)
	if err != nil {
		return err
	}
	p, err := NormalizePortal(portal)
	if err != nil {
		return fmt.Errorf("target %s: %w", iqn, err)
	}
	for _, pg := range t.PortalGroups {
		if slices.Contains(pg.Portals, p) {
			return editErr("target %s: portal %s already in portal group %d", iqn, p, pg.Tag)
		}
	}
	for i := range t.PortalGroups {
		if t.PortalGroups[i].Tag == tag {
			t.PortalGroups[i].Portals = append(t.PortalGroups[i].Portals, p)
			return nil
		}
	}
	t.PortalGroups = append(t.PortalGroups, PortalGroup{Tag: tag, Portals: []string{p}})
	slices.SortFunc(t.PortalGroups, func(a, b PortalGroup) int { return int(a.Tag) - int(b.Tag) })
	return nil
}

// DeletePortal removes portal from target iqn, and its portal group once empty.
func (c *Config) DeletePortal(iqn, portal string) error {
	t, err := c.mustTarget(iqn)
	if err != nil {
		return err
	}
	p, err := NormalizePortal(portal)
	if err != nil {
		return fmt.Errorf("target %s: %w", iqn, err)
	}
	for i := range t.PortalGroups {
		pg := &t.PortalGroups[i]
		if j := slices.Index(pg.Portals, p); j >= 0 {
			pg.Portals = slices.Delete(pg.Portals, j, j+1)
			if len(pg.Portals) == 0 {
				t.PortalGroups = slices.Delete(t.PortalGroups, i, i+1)
			}
			return nil
		}
	}
	return editErr("target %s: no portal %s", iqn, p)
}

// AddLUN maps backstore into target iqn as LUN *lun, or the lowest free LUN when lun
// is nil, and returns the LUN number.
func (c *Config) AddLUN(iqn, backstore string, lun *uint64) (uint64, error) {
	t, err := c.mustTarget(iqn)
	if err != nil {
		return 0, err
	}
	if c.Backstore(backstore) == nil {
		return 0, editErr("target %s: backstore %q does not exist", iqn, backstore)
	}
	used := map[uint64]bool{}
	for _, l := range t.LUNs {
		used[l.LUN] = true
	}
	var n uint64
	if lun != nil {
		n = *lun
		if used[n] {
			return 0, editErr("target %s: LUN %d already exists", iqn, n)
		}
	} else {
		for used[n] {
			n++
		}
		if n > MaxLUN {
			return 0, editErr("target %s: no free LUN", iqn)
		}
	}
	t.LUNs = append(t.LUNs, LUN{LUN: n, Backstore: backstore})
	slices.SortFunc(t.LUNs, func(a, b LUN) int { return cmpU64(a.LUN, b.LUN) })
	return n, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// DeleteLUN removes LUN n of target iqn and every ACL's mapping of it.
func (c *Config) DeleteLUN(iqn string, n uint64) error {
	t, err := c.mustTarget(iqn)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(t.LUNs, func(l LUN) bool { return l.LUN == n }) {
		return editErr("target %s: LUN %d does not exist", iqn, n)
	}
	t.deleteLUN(n)
	return nil
}

func (t *Target) deleteLUN(n uint64) {
	t.LUNs = slices.DeleteFunc(t.LUNs, func(l LUN) bool { return l.LUN == n })
	for i := range t.ACLs {
		a := &t.ACLs[i]
		a.MappedLUNs = slices.DeleteFunc(a.MappedLUNs, func(m MappedLUN) bool { return m.TargetLUN == n })
	}
}

// ACL returns target t's ACL for initiator, or nil.
func (t *Target) ACL(initiator string) *ACL {
	for i := range t.ACLs {
		if t.ACLs[i].InitiatorIQN == initiator {
			return &t.ACLs[i]
		}
	}
	return nil
}

// AddACL admits initiator to target iqn, seeing only mapped when not empty.
func (c *Config) AddACL(iqn, initiator string, mapped []MappedLUN) error {
	t, err := c.mustTarget(iqn)
	if err != nil {
		return err
	}
	if t.ACL(initiator) != nil {
		return editErr("target %s: ACL for %s already exists", iqn, initiator)
	}
	t.ACLs = append(t.ACLs, ACL{InitiatorIQN: initiator, MappedLUNs: mapped})
	return nil
}

// DeleteACL removes target iqn's ACL for initiator.
func (c *Config) DeleteACL(iqn, initiator string) error {
	t, err := c.mustTarget(iqn)
	if err != nil {
		return err
	}
	if t.ACL(initiator) == nil {
		return editErr("target %s: no ACL for %s", iqn, initiator)
	}
	t.ACLs = slices.DeleteFunc(t.ACLs, func(a ACL) bool { return a.InitiatorIQN == initiator })
	return nil
}

// SetCHAP sets the CHAP credentials of target iqn, or of its ACL for initiator when
// initiator is not empty. mutual may be nil.
func (c *Config) SetCHAP(iqn, initiator string, chap, mutual *CHAP) error {
	t, err := c.mustTarget(iqn)
	if err != nil {
		return err
	}
	if initiator == "" {
		t.CHAP, t.MutualCHAP = chap, mutual
		return nil
	}
	a := t.ACL(initiator)
	if a == nil {
		return editErr("target %s: no ACL for %s", iqn, initiator)
	}
	a.CHAP, a.MutualCHAP = chap, mutual
	return nil
}

// SetOpenAccess turns open access (every initiator admitted) of target iqn on or off.
func (c *Config) SetOpenAccess(iqn string, open bool) error {
	t, err := c.mustTarget(iqn)
	if err != nil {
		return err
	}
	t.OpenAccess = open
	return nil
}

// SetALUA sets the ALUA state of portal group tag of target iqn (see
// PortalGroup.ALUA); the group must exist.
func (c *Config) SetALUA(iqn string, tag uint16, state string) error {
	t, err := c.mustTarget(iqn)
	if err != nil {
		return err
	}
	st, err := scsi.ParsePortGroupState(state)
	if err != nil {
		return editErr("target %s portal group %d: %w", iqn, tag, err)
	}
	for i := range t.PortalGroups {
		if t.PortalGroups[i].Tag == tag {
			t.PortalGroups[i].ALUA = st.String()
			if st == scsi.ALUAActiveOptimized {
				t.PortalGroups[i].ALUA = "" // the default
			}
			return nil
		}
	}
	return editErr("target %s: no portal group %d (create it with `rampart target portal create %s ADDR --tpg %d`)", iqn, tag, iqn, tag)
}
