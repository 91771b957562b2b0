package multipath

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultBindingsFile is where aliases are kept, as multipath keeps them in
// /etc/multipath/bindings.
const DefaultBindingsFile = "/etc/rampart/multipath/bindings"

// Binding ties a map alias to a LUN's WWID.
type Binding struct {
	Alias string
	WWID  string
}

// Limits of a bindings file.
const (
	maxBindingsFile = 1 << 20
	maxAliasLen     = 128
	maxWWIDLen      = 256
)

// ErrAliasTaken is the error of an alias already bound to another LUN.
var ErrAliasTaken = errors.New("multipath: alias bound to another WWID")

// ValidAlias reports whether s can name a map (it names a file and an NBD export).
func ValidAlias(s string) bool {
	return s != "" && len(s) <= maxAliasLen && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00 \t\n#")
}

// ParseBindings decodes a bindings file: one "ALIAS WWID" line per map, # comments and
// blank lines ignored, as multipath writes /etc/multipath/bindings. An alias or WWID
// given twice is an error.
func ParseBindings(b []byte) ([]Binding, error) {
	if len(b) > maxBindingsFile {
		return nil, fmt.Errorf("bindings: %d bytes, more than %d", len(b), maxBindingsFile)
	}
	var out []Binding
	aliases, wwids := map[string]bool{}, map[string]bool{}
	for n, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("bindings line %d: want ALIAS WWID, got %d fields", n+1, len(f))
		}
		if !ValidAlias(f[0]) || len(f[1]) > maxWWIDLen {
			return nil, fmt.Errorf("bindings line %d: alias %q or WWID is not valid", n+1, f[0])
		}
		if aliases[f[0]] || wwids[f[1]] {
			return nil, fmt.Errorf("bindings line %d: alias %s or WWID %s bound twice", n+1, f[0], f[1])
		}
		aliases[f[0]], wwids[f[1]] = true, true
		out = append(out, Binding{Alias: f[0], WWID: f[1]})
	}
	return out, nil
}

// aliasName is the n-th user-friendly name: mpatha ... mpathz, mpathaa, mpathab ...
func aliasName(prefix string, n int) string {
	var b []byte
	for n++; n > 0; n = (n - 1) / 26 {
		b = append([]byte{byte('a' + (n-1)%26)}, b...)
	}
	return prefix + string(b)
}

// Bind resolves a map's alias in the bindings file at path, under an exclusive lock:
// with alias set, it checks that the alias is free or already this WWID's and records
// it (ErrAliasTaken otherwise); with alias empty, it returns the WWID's alias, or
// allocates the first free mpathX and records it (user_friendly_names).
func Bind(path, alias, wwid string) (string, error) {
	if wwid == "" || len(wwid) > maxWWIDLen || strings.ContainsAny(wwid, " \t\n#") {
		return "", fmt.Errorf("bindings: WWID %q cannot be bound", wwid)
	}
	if alias != "" && !ValidAlias(alias) {
		return "", fmt.Errorf("bindings: alias %q is not a plain name", alias)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", path, err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(bufio.NewReader(f)); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	bs, err := ParseBindings(buf.Bytes())
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	taken := map[string]bool{}
	for _, b := range bs {
		taken[b.Alias] = true
		switch {
		case alias != "" && b.Alias == alias && b.WWID != wwid:
			return "", fmt.Errorf("%w: %s is bound to %s in %s, this LUN is %s", ErrAliasTaken, alias, b.WWID, path, wwid)
		case alias != "" && b.Alias == alias, alias == "" && b.WWID == wwid:
			return b.Alias, nil
		case alias != "" && b.WWID == wwid:
			return "", fmt.Errorf("bindings: LUN %s is already bound to alias %s in %s: use that name, or edit the file", wwid, b.Alias, path)
		}
	}
	if alias == "" {
		for n := 0; ; n++ {
			if alias = aliasName("mpath", n); !taken[alias] {
				break
			}
		}
	}
	line := alias + " " + wwid + "\n"
	if buf.Len() == 0 {
		line = "# rampart multipath bindings: ALIAS WWID (like /etc/multipath/bindings)\n" + line
	} else if !bytes.HasSuffix(buf.Bytes(), []byte("\n")) {
		line = "\n" + line
	}
	if _, err := f.Seek(0, 2); err != nil {
		return "", err
	}
	if _, err := f.WriteString(line); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", path, err)
	}
	return alias, nil
}
