package local_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/local/localtest"
)

// mount starts a local cluster and mounts it once.
func mount(t *testing.T) string {
	t.Helper()
	_, mnts := localtest.Mounts(t, 1)
	return mnts[0]
}

func TestMountBigFile(t *testing.T) {
	mnt := mount(t)
	data := make([]byte, 64<<20)
	rand.Read(data)
	p := filepath.Join(mnt, "big")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("read back %d bytes with a different checksum, want %d equal bytes", len(got), len(data))
	}
}

func TestMountPOSIX(t *testing.T) {
	mnt := mount(t)
	j := func(s string) string { return filepath.Join(mnt, s) }
	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{"mkdir", func() error { return os.Mkdir(j("d"), 0o755) }, nil},
		{"mkdir existing", func() error { return os.Mkdir(j("d"), 0o755) }, syscall.EEXIST},
		{"create in dir", func() error { return os.WriteFile(j("d/f"), []byte("abc"), 0o644) }, nil},
		{"O_EXCL on existing", func() error {
			_, err := os.OpenFile(j("d/f"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			return err
		}, syscall.EEXIST},
		{"rmdir non-empty", func() error { return os.Remove(j("d")) }, syscall.ENOTEMPTY},
		{"symlink", func() error { return os.Symlink("d/f", j("l")) }, nil},
		{"read through symlink", func() error {
			b, err := os.ReadFile(j("l"))
			if err == nil && string(b) != "abc" {
				return errors.New("symlink content " + string(b) + ", want abc")
			}
			return err
		}, nil},
		{"O_TRUNC", func() error {
			if err := os.WriteFile(j("d/f"), []byte("x"), 0o644); err != nil {
				return err
			}
			b, err := os.ReadFile(j("d/f"))
			if err == nil && string(b) != "x" {
				return errors.New("after O_TRUNC rewrite got " + string(b) + ", want x")
			}
			return err
		}, nil},
		{"truncate grows with zeros", func() error {
			if err := os.Truncate(j("d/f"), 4); err != nil {
				return err
			}
			b, err := os.ReadFile(j("d/f"))
			if err == nil && !bytes.Equal(b, []byte{'x', 0, 0, 0}) {
				return errors.New("truncated content wrong")
			}
			return err
		}, nil},
		{"chmod", func() error {
			if err := os.Chmod(j("d/f"), 0o600); err != nil {
				return err
			}
			st, err := os.Stat(j("d/f"))
			if err == nil && st.Mode().Perm() != 0o600 {
				return errors.New("mode " + st.Mode().String() + ", want -rw-------")
			}
			return err
		}, nil},
		{"rename over existing", func() error {
			if err := os.WriteFile(j("d/g"), []byte("new"), 0o644); err != nil {
				return err
			}
			if err := os.Rename(j("d/g"), j("d/f")); err != nil {
				return err
			}
			b, err := os.ReadFile(j("d/f"))
			if err == nil && string(b) != "new" {
				return errors.New("after rename got " + string(b) + ", want new")
			}
			return err
		}, nil},
		{"hard link", func() error {
			if err := os.Link(j("d/f"), j("hl")); err != nil {
				return err
			}
			st, err := os.Stat(j("hl"))
			if err == nil && st.Sys().(*syscall.Stat_t).Nlink != 2 {
				return errors.New("nlink after link is not 2")
			}
			return os.Remove(j("hl"))
		}, nil},
		{"mkfifo", func() error { return syscall.Mkfifo(j("fifo"), 0o644) }, nil},
		{"unlink", func() error { return os.Remove(j("d/f")) }, nil},
		{"unlink missing", func() error { return os.Remove(j("d/f")) }, syscall.ENOENT},
		{"rmdir empty", func() error { return os.Remove(j("d")) }, nil},
	}
	for _, tt := range tests {
		err := tt.run()
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}
