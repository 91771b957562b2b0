package initiator

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/volume"
)

// URL is one path to a LUN: iscsi://[USER[%SECRET]@]HOST[:PORT]/IQN/LUN, the form
// libiscsi's tools use.
type URL struct {
	Portal string
	Target string
	LUN    uint64
	CHAP   *CHAP
}

// ParseURL parses an iscsi:// URL.
func ParseURL(s string) (URL, error) {
	bad := fmt.Errorf("iSCSI URL %q: want iscsi://[USER%%SECRET@]HOST[:PORT]/IQN/LUN", s)
	rest, ok := strings.CutPrefix(s, "iscsi://")
	if !ok {
		return URL{}, bad
	}
	hostPart, path, ok := strings.Cut(rest, "/")
	if !ok {
		return URL{}, bad
	}
	var r URL
	// libiscsi writes USER%SECRET@, which is not a valid URL escape: split by hand.
	if at := strings.LastIndexByte(hostPart, '@'); at >= 0 {
		user, secret, found := strings.Cut(hostPart[:at], "%")
		if !found {
			user, secret, _ = strings.Cut(hostPart[:at], ":")
		}
		r.CHAP = &CHAP{User: unescape(user), Secret: unescape(secret)}
		hostPart = hostPart[at+1:]
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if hostPart == "" || len(parts) != 2 || parts[0] == "" {
		return URL{}, bad
	}
	lun, err := strconv.ParseUint(parts[1], 10, 14)
	if err != nil {
		return URL{}, fmt.Errorf("iSCSI URL %q: LUN %q is not a number below 16384", s, parts[1])
	}
	r.Portal, r.Target, r.LUN = withDefaultPort(hostPart), parts[0], lun
	return r, nil
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// String gives the URL back without the secret.
func (u URL) String() string {
	return fmt.Sprintf("iscsi://%s/%s/%d", u.Portal, u.Target, u.LUN)
}

// sessionLUN is a LUN that owns its session: closing it logs out.
type sessionLUN struct {
	*LUN
	s *Client
}

func (l sessionLUN) Close() error { return l.s.Close() }

// OpenURL logs in to the URL's target and opens its LUN. The session logs in again
// when its connection drops (see Client), within o.ReplacementTimeout.
func OpenURL(ctx context.Context, raw string, o Options) (blockdev.Device, error) {
	u, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	o.Portal, o.TargetName = u.Portal, u.Target
	if u.CHAP != nil {
		o.CHAP = u.CHAP
	}
	s, err := Connect(ctx, o)
	if err != nil {
		return nil, err
	}
	l, err := OpenLUN(ctx, s, u.LUN)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	return sessionLUN{l, s}, nil
}

func init() {
	volume.Register("iscsi", func(ctx context.Context, spec string, opts volume.Options) (blockdev.Device, error) {
		return OpenURL(ctx, spec, Options{})
	})
}
