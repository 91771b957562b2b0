package blockdev

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFileRefresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grow.img")
	d, err := OpenFile(path, FileOptions{Create: true, Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := os.Truncate(path, 3<<20+100); err != nil {
		t.Fatal(err)
	}
	if got := d.Size(); got != 1<<20 {
		t.Fatalf("before Refresh: got size %d, want the size at open, %d", got, 1<<20)
	}
	n, err := d.Refresh()
	if err != nil || n != 3<<20 || d.Size() != 3<<20 {
		t.Fatalf("Refresh: got %d (Size %d), %v; want %d, whole blocks only", n, d.Size(), err, 3<<20)
	}
	if _, err := d.MappedExtent(2 << 20); err != nil {
		t.Errorf("MappedExtent in the grown part: %v", err)
	}
}
