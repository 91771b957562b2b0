package raid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/volume"
)

func init() {
	volume.Register("raid", openVolume)
}

// ParseSpec splits "raid:a,b,missing" into member specs ("" for missing).
func ParseSpec(spec string) ([]string, error) {
	rest, ok := strings.CutPrefix(spec, "raid:")
	if !ok || rest == "" {
		return nil, fmt.Errorf("raid volume spec %q: want raid:MEMBER,MEMBER,...", spec)
	}
	parts := strings.Split(rest, ",")
	for i, p := range parts {
		if p == "missing" {
			parts[i] = ""
		} else if p == "" {
			return nil, fmt.Errorf("raid volume spec %q: empty member", spec)
		}
	}
	return parts, nil
}

// OpenMembers opens member specs as volumes ("" stays missing). On error the members
// opened so far are closed.
func OpenMembers(ctx context.Context, specs []string, readOnly bool) ([]Member, error) {
	ms := make([]Member, len(specs))
	for i, s := range specs {
		if s == "" {
			ms[i] = Member{Name: "missing"}
			continue
		}
		d, err := volume.Open(ctx, s, volume.Options{ReadOnly: readOnly})
		if err != nil {
			CloseMembers(ms)
			return nil, fmt.Errorf("open raid member %s: %w", s, err)
		}
		ms[i] = Member{Dev: d, Name: s}
	}
	return ms, nil
}

// OpenFunc opens members by spec for AssembleOptions.Open.
func OpenFunc(readOnly bool) func(ctx context.Context, spec string) (blockdev.Device, error) {
	return func(ctx context.Context, spec string) (blockdev.Device, error) {
		return volume.Open(ctx, spec, volume.Options{ReadOnly: readOnly})
	}
}

// CloseMembers closes the members that are open.
func CloseMembers(ms []Member) error {
	var errs []error
	for _, m := range ms {
		if c, ok := m.Dev.(blockdev.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// serveLockWait is how long a process opening an array to serve it waits for the
// array's lock: long enough for a `rampart raid status` or `examine` that assembled it
// read-only a moment before to finish, short enough to report an array really served
// by another process promptly.
const serveLockWait = 10 * time.Second

func openVolume(ctx context.Context, spec string, opts volume.Options) (blockdev.Device, error) {
	specs, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	ms, err := OpenMembers(ctx, specs, opts.ReadOnly)
	if err != nil {
		return nil, err
	}
	// A process that opens an array serves it: it holds the array's lock and
	// answers `rampart raid` commands on the control socket.
	a, err := Assemble(ctx, ms, AssembleOptions{ReadOnly: opts.ReadOnly, Lock: true, LockWait: serveLockWait, Control: true,
		Open: OpenFunc(opts.ReadOnly), Logger: slog.Default()})
	if err != nil {
		CloseMembers(ms)
		return nil, fmt.Errorf("open volume %s: %w", spec, err)
	}
	return a, nil
}
