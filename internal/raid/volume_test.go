package raid

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/volume"
)

// TestVolumeSpec opens an array of files through the raid: volume kind, healthy and
// with a member missing.
func TestVolumeSpec(t *testing.T) {
	t.Setenv("RAMPART_RUN_DIR", t.TempDir())
	dir := t.TempDir()
	var ms []Member
	var paths []string
	for _, n := range []string{"a", "b", "c"} {
		p := filepath.Join(dir, n)
		d, err := blockdev.OpenFile(p, blockdev.FileOptions{Create: true, Size: 8 << 20, BlockSize: 512})
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, Member{Dev: d, Name: p})
		paths = append(paths, p)
	}
	if err := Create(ms, CreateOptions{Level: 5, Chunk: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	CloseMembers(ms)
	want := bytes.Repeat([]byte("raid:spec"), 512*10)
	open := func(spec string) blockdev.Device {
		t.Helper()
		d, err := volume.Open(t.Context(), spec, volume.Options{})
		if err != nil {
			t.Fatalf("open %s: %v", spec, err)
		}
		return d
	}
	d := open("raid:" + paths[0] + "," + paths[1] + "," + paths[2])
	if _, err := d.WriteAt(want, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := blockdev.Close(d); err != nil {
		t.Fatal(err)
	}
	d = open("raid:" + paths[0] + ",missing," + paths[2])
	got := make([]byte, len(want))
	if _, err := d.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, want) {
		t.Errorf("degraded read through raid: spec: err %v, data right %v", err, bytes.Equal(got, want))
	}
	blockdev.Close(d)
	if _, err := ParseSpec("raid:a,,b"); err == nil {
		t.Errorf("ParseSpec(raid:a,,b): got nil error, want one")
	}
}
