package blockdev_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/blockdev/blockdevtest"
)

func TestMemSuite(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		blockdevtest.Run(t, func(t *testing.T) blockdev.Device { return blockdev.NewMem(8<<20, bs) })
	}
}

func newFile(t *testing.T, opts blockdev.FileOptions) *blockdev.File {
	t.Helper()
	opts.Create, opts.Size = true, 8<<20
	d, err := blockdev.OpenFile(filepath.Join(t.TempDir(), "vol.img"), opts)
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	return d
}

func TestFileSuite(t *testing.T) {
	for _, opts := range []blockdev.FileOptions{{}, {BlockSize: 4096}, {WriteThrough: true}} {
		blockdevtest.Run(t, func(t *testing.T) blockdev.Device { return newFile(t, opts) })
	}
}

func TestFileSparseAndHoles(t *testing.T) {
	d := newFile(t, blockdev.FileOptions{})
	defer d.Close()
	if e, err := d.MappedExtent(0); err != nil || e.Mapped || e.Length != d.Size() {
		t.Fatalf("new sparse file: MappedExtent(0) = %+v, %v; want one hole of %d bytes", e, err, d.Size())
	}
	if _, err := d.WriteAt(make([]byte, 64<<10), 1<<20); err != nil {
		t.Fatal(err)
	}
	e, err := d.MappedExtent(1 << 20)
	if err != nil || !e.Mapped || e.Length < 64<<10 {
		t.Fatalf("written range: MappedExtent = %+v, %v; want mapped, at least 64 KiB", e, err)
	}
	if err := d.Unmap(1<<20, 64<<10); err != nil {
		t.Fatal(err)
	}
	if e, _ := d.MappedExtent(1 << 20); e.Mapped {
		t.Errorf("after Unmap: MappedExtent = %+v, want a hole", e)
	}
}

func TestFileReadOnlyAndWriteCache(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ro.img")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := blockdev.OpenFile(p, blockdev.FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, blockdev.ErrReadOnly) {
		t.Errorf("write to read-only file: got %v, want ErrReadOnly", err)
	}
	if !d.ReadOnly() || !d.WriteCacheEnabled() {
		t.Errorf("ReadOnly() = %v, WriteCacheEnabled() = %v; want true, true", d.ReadOnly(), d.WriteCacheEnabled())
	}
	wt := newFile(t, blockdev.FileOptions{WriteThrough: true})
	defer wt.Close()
	if wt.WriteCacheEnabled() {
		t.Errorf("O_DSYNC file reports a volatile write cache")
	}
}

func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		opts blockdev.FileOptions
	}{
		{"missing without create", filepath.Join(dir, "nope"), blockdev.FileOptions{}},
		{"bad block size", filepath.Join(dir, "x"), blockdev.FileOptions{BlockSize: 1000, Create: true, Size: 1 << 20}},
		{"create unaligned size", filepath.Join(dir, "y"), blockdev.FileOptions{Create: true, Size: 1000}},
		{"directory", dir, blockdev.FileOptions{}},
	}
	for _, tc := range tests {
		if d, err := blockdev.OpenFile(tc.path, tc.opts); err == nil {
			d.Close()
			t.Errorf("%s: OpenFile succeeded, want an error", tc.name)
		}
	}
}

func TestMemCrashKeepsOnlyFlushed(t *testing.T) {
	m := blockdev.NewMem(1<<20, 512)
	m.EnableCrash()
	one := []byte{1}
	buf := make([]byte, 512)
	copy(buf, one)
	m.WriteAt(buf, 0)
	m.Flush()
	buf[0] = 2
	m.WriteAt(buf, 512)
	m.Crash()
	got := make([]byte, 1024)
	m.ReadAt(got, 0)
	if got[0] != 1 || got[512] != 0 {
		t.Errorf("after crash: block0[0]=%d block1[0]=%d, want 1 and 0", got[0], got[512])
	}
}
