// Package units parses and formats human-readable quantities used on
// rampart's command lines, such as volume sizes ("10G") and chunk sizes
// ("64K"). Suffixes are binary: K = 1024, M = 1024², and so on.
package units

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrSize is returned (wrapped) for every unparsable size.
var ErrSize = errors.New("units: invalid size")

var suffixes = []struct {
	s     string
	shift uint
}{
	{"E", 60}, {"P", 50}, {"T", 40}, {"G", 30}, {"M", 20}, {"K", 10},
}

// ParseSize parses a byte count such as "4096", "64K", "10G", "1.5T",
// "512B", "10GiB" or "10GB". Suffixes are case-insensitive and binary
// (K = 1024). Fractional values are allowed with a suffix as long as the
// result is a whole number of bytes.
func ParseSize(s string) (int64, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("size %q: empty: %w", orig, ErrSize)
	}
	u := strings.ToUpper(s)
	u = strings.TrimSuffix(u, "IB")
	if strings.HasSuffix(u, "B") && len(u) > 1 {
		u = u[:len(u)-1]
	}
	var shift uint
	for _, sf := range suffixes {
		if strings.HasSuffix(u, sf.s) {
			shift = sf.shift
			u = strings.TrimSuffix(u, sf.s)
			break
		}
	}
	u = strings.TrimSpace(u)
	if u == "" || strings.HasPrefix(u, "-") || strings.HasPrefix(u, "+") {
		return 0, fmt.Errorf("size %q: want a non-negative number with optional K/M/G/T/P/E suffix: %w", orig, ErrSize)
	}
	if n, err := strconv.ParseUint(u, 10, 64); err == nil {
		if shift > 0 && n > math.MaxInt64>>shift {
			return 0, fmt.Errorf("size %q: overflows int64: %w", orig, ErrSize)
		}
		if n > math.MaxInt64 {
			return 0, fmt.Errorf("size %q: overflows int64: %w", orig, ErrSize)
		}
		return int64(n) << shift, nil
	}
	f, err := strconv.ParseFloat(u, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(u, "EXPabcdefx_") {
		return 0, fmt.Errorf("size %q: want a non-negative number with optional K/M/G/T/P/E suffix: %w", orig, ErrSize)
	}
	v := f * float64(uint64(1)<<shift)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: overflows int64: %w", orig, ErrSize)
	}
	if v != math.Trunc(v) {
		return 0, fmt.Errorf("size %q: not a whole number of bytes: %w", orig, ErrSize)
	}
	return int64(v), nil
}

// FormatSize renders n with the largest binary suffix that divides it
// exactly ("64K", "10G", "1536"), so ParseSize(FormatSize(n)) == n.
func FormatSize(n int64) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	u := uint64(n)
	if neg {
		u = uint64(-n)
		if n == math.MinInt64 {
			return strconv.FormatInt(n, 10)
		}
	}
	out := strconv.FormatUint(u, 10)
	for _, sf := range suffixes {
		if u%(uint64(1)<<sf.shift) == 0 {
			out = strconv.FormatUint(u>>sf.shift, 10) + sf.s
			break
		}
	}
	if neg {
		return "-" + out
	}
	return out
}
