package target

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"

	"github.com/rampart-storage/rampart/internal/scsi"
)

// ErrInvalidConfig is wrapped by every error of Validate.
var ErrInvalidConfig = errors.New("target: invalid configuration")

var (
	iqnRE = regexp.MustCompile(`^iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[^\s]+)?$`)
	euiRE = regexp.MustCompile(`^eui\.[0-9A-Fa-f]{16}$`)
	naaRE = regexp.MustCompile(`^naa\.([0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})$`)
)

// ValidName reports whether name is an iSCSI name (iqn., eui. or naa. format).
func ValidName(name string) bool {
	return len(name) <= 223 && (iqnRE.MatchString(name) || euiRE.MatchString(name) || naaRE.MatchString(name))
}

// MaxLUN is the largest LUN number served (flat space addressing).
const MaxLUN = 16383

// Validate checks cfg statically: unique names, LUNs that name existing backstores,
// valid iSCSI names and portals, CHAP secrets of a usable length.
func Validate(cfg Config) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	backstores := map[string]bool{}
	for i, b := range cfg.Backstores {
		switch {
		case b.Name == "":
			bad("backstore #%d has no name", i)
		case backstores[b.Name]:
			bad("duplicate backstore %q", b.Name)
		}
		backstores[b.Name] = true
		if b.Volume == "" {
			bad("backstore %q has no volume", b.Name)
		}
		if b.BlockSize != 0 && b.BlockSize != 512 && b.BlockSize != 4096 {
			bad("backstore %q: block size %d, want 512 or 4096", b.Name, b.BlockSize)
		}
		if b.Size < 0 {
			bad("backstore %q: negative size %d", b.Name, b.Size)
		}
	}
	checkCHAP(bad, "discovery", cfg.DiscoveryCHAP, cfg.MutualDiscoveryCHAP)
	targets := map[string]bool{}
	for _, t := range cfg.Targets {
		if !ValidName(t.IQN) {
			bad("target %q: not an iSCSI name (iqn.YYYY-MM.reversed.domain[:id], eui. or naa.)", t.IQN)
		}
		if targets[t.IQN] {
			bad("duplicate target %q", t.IQN)
		}
		targets[t.IQN] = true
		tags := map[uint16]bool{}
		portals := map[string]bool{}
		for _, pg := range t.PortalGroups {
			if tags[pg.Tag] {
				bad("target %s: duplicate portal group tag %d", t.IQN, pg.Tag)
			}
			tags[pg.Tag] = true
			if _, err := scsi.ParsePortGroupState(pg.ALUA); err != nil {
				bad("target %s portal group %d: %v", t.IQN, pg.Tag, err)
			}
			for _, p := range pg.Portals {
				if err := checkPortal(p); err != nil {
					bad("target %s portal group %d: %v", t.IQN, pg.Tag, err)
				}
				if portals[p] {
					bad("target %s: portal %s in two portal groups", t.IQN, p)
				}
				portals[p] = true
			}
		}
		luns := map[uint64]bool{}
		for _, l := range t.LUNs {
			if l.LUN > MaxLUN {
				bad("target %s: LUN %d above %d", t.IQN, l.LUN, MaxLUN)
			}
			if luns[l.LUN] {
				bad("target %s: duplicate LUN %d", t.IQN, l.LUN)
			}
			luns[l.LUN] = true
			if !backstores[l.Backstore] {
				bad("target %s LUN %d: unknown backstore %q", t.IQN, l.LUN, l.Backstore)
			}
		}
		checkCHAP(bad, "target "+t.IQN, t.CHAP, t.MutualCHAP)
		acls := map[string]bool{}
		for _, a := range t.ACLs {
			if !ValidName(a.InitiatorIQN) {
				bad("target %s: ACL initiator %q is not an iSCSI name", t.IQN, a.InitiatorIQN)
			}
			if acls[a.InitiatorIQN] {
				bad("target %s: duplicate ACL for %s", t.IQN, a.InitiatorIQN)
			}
			acls[a.InitiatorIQN] = true
			mapped := map[uint64]bool{}
			for _, m := range a.MappedLUNs {
				if !luns[m.TargetLUN] {
					bad("target %s ACL %s: mapped LUN %d names target LUN %d, which does not exist", t.IQN, a.InitiatorIQN, m.LUN, m.TargetLUN)
				}
				if mapped[m.LUN] || m.LUN > MaxLUN {
					bad("target %s ACL %s: duplicate or too large mapped LUN %d", t.IQN, a.InitiatorIQN, m.LUN)
				}
				mapped[m.LUN] = true
			}
			checkCHAP(bad, "target "+t.IQN+" ACL "+a.InitiatorIQN, a.CHAP, a.MutualCHAP)
		}
	}
	return errors.Join(errs...)
}

func checkCHAP(bad func(string, ...any), where string, c, mutual *CHAP) {
	for _, x := range []struct {
		kind string
		c    *CHAP
	}{{"CHAP", c}, {"mutual CHAP", mutual}} {
		if x.c == nil {
			continue
		}
		if x.c.User == "" {
			bad("%s: %s without a user name", where, x.kind)
		}
		if n := len(x.c.Secret); n < 12 || n > 255 {
			bad("%s: %s secret of %d bytes, want 12 to 255 (open-iscsi accepts 12 to 16)", where, x.kind, n)
		}
	}
	if mutual != nil && c == nil {
		bad("%s: mutual CHAP without CHAP", where)
	}
	if mutual != nil && c != nil && mutual.Secret == c.Secret {
		bad("%s: mutual CHAP secret equals the CHAP secret", where)
	}
}

func checkPortal(p string) error {
	host, port, err := net.SplitHostPort(p)
	if err != nil {
		return fmt.Errorf("portal %q: %w", p, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("portal %q: bad port %q", p, port)
	}
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("portal %q: host %q is not an IP address", p, host)
	}
	return nil
}
