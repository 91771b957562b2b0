package raid

import (
	"bytes"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/volume"
)

// TestVolumeSpec opens an array of files through the raid: volume kind, healthy and
// with a member missing.
func TestVolumeSpec(t *testing.T) {
	t.Setenv("RAMPART_RUN_DIR", t.TempDir())
	paths := fileArray(t, t.TempDir())
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
