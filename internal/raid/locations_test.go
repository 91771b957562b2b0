package raid

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/volume"
)

// TestAssembleFindsReplacement: a member fails and a spare is rebuilt in its place;
// assembling again from the original list (as a target's saved backstore spec does
// after a restart) finds the spare where the superblock says it is, leaves the
// replaced member out, and reads the data written before and during the failure.
func TestAssembleFindsReplacement(t *testing.T) {
	t.Setenv("RAMPART_RUN_DIR", t.TempDir())
	dir := t.TempDir()
	paths := fileArray(t, dir)
	spec := "raid:" + strings.Join(paths, ",")
	d, err := volume.Open(t.Context(), spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := d.(*Array)
	before := bytes.Repeat([]byte("before failure "), 512*8)
	if _, err := a.WriteAt(before[:len(before)/512*512], 0); err != nil {
		t.Fatal(err)
	}
	if err := a.FailMember(paths[1], false); err != nil {
		t.Fatal(err)
	}
	during := bytes.Repeat([]byte("degraded "), 512*9)
	if _, err := a.WriteAt(during, 1<<20); err != nil {
		t.Fatal(err)
	}
	spare := filepath.Join(dir, "spare")
	addSpare(t, a, spare)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// Without the superblock's locations the original list is refused: b is stale.
	ms, err := OpenMembers(t.Context(), paths, true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Assemble(t.Context(), ms, AssembleOptions{ReadOnly: true})
	CloseMembers(ms)
	if !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), paths[1]) {
		t.Fatalf("assembly of the original list without Open: %v, want %v naming %s", err, ErrStale, paths[1])
	}

	d, err = volume.Open(t.Context(), spec, volume.Options{})
	if err != nil {
		t.Fatalf("assembly of the original list after the member was replaced: %v", err)
	}
	defer blockdev.Close(d)
	a = d.(*Array)
	st := a.Status()
	var names []string
	for _, m := range st.Members {
		names = append(names, m.Name)
	}
	if st.Failed || st.Active != 3 || !slices.Equal(names, []string{paths[0], spare, paths[2]}) {
		t.Fatalf("status after assembly: failed %v, %d active, members %v; want whole with %v", st.Failed, st.Active, names, []string{paths[0], spare, paths[2]})
	}
	for _, w := range []struct {
		off  int64
		data []byte
	}{{0, before[:len(before)/512*512]}, {1 << 20, during}} {
		got := make([]byte, len(w.data))
		if _, err := a.ReadAt(got, w.off); err != nil || !bytes.Equal(got, w.data) {
			t.Errorf("read at %d: err %v, data right %v", w.off, err, bytes.Equal(got, w.data))
		}
	}
}

// TestSuperblockLocations: the member locations survive a round trip, and specs too
// long for their area are left out rather than cut.
func TestSuperblockLocations(t *testing.T) {
	sb := &Superblock{RaidDevices: 3, Chunk: 65536, BlockSize: 512, Roles: make([]RoleEntry, 3),
		Locations: []string{"/dev/sdb", "", "raid:/x,/y"}}
	got := roundTrip(t, sb)
	if !slices.Equal(got.Locations, sb.Locations) {
		t.Errorf("locations %q, want %q", got.Locations, sb.Locations)
	}
	// A write torn between the first sector (events) and the location area leaves
	// a valid superblock: the new fields with the old locations.
	old, err := sb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sb.Events, sb.Locations = 9, []string{"/dev/sdb", "/dev/sdq", "raid:/x,/y"}
	nb, err := sb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	torn := append(append([]byte(nil), nb[:512]...), old[512:]...)
	if got, err = UnmarshalSuperblock(torn); err != nil || got.Events != 9 || got.Locations[1] != "" {
		t.Errorf("torn write: %v, events %d, locations %q; want events 9 and the old locations", err, got.Events, got.Locations)
	}
	// A location area torn within itself is ignored.
	torn = append(append([]byte(nil), nb[:2048]...), old[2048:]...)
	torn[locationsOff+10] ^= 0xff
	if got, err = UnmarshalSuperblock(torn); err != nil || got.Locations != nil {
		t.Errorf("torn location area: %v, locations %q; want a valid superblock without locations", err, got.Locations)
	}
	sb.Locations = []string{strings.Repeat("x", 1200), strings.Repeat("y", 1200), "z"}
	b, err := sb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got, err = UnmarshalSuperblock(b); err != nil || got.Locations != nil {
		t.Errorf("oversized locations: got %q (err %v), want none", got.Locations, err)
	}
}

// TestStatusDuringRebuild asks for the status again and again while a member is
// rebuilt: the rebuild holds the bitmap's lock while it takes the array's, so Status
// must not take them the other way round (it deadlocked the CLI's raid drill once).
func TestStatusDuringRebuild(t *testing.T) {
	t.Setenv("RAMPART_RUN_DIR", t.TempDir())
	dir := t.TempDir()
	paths := fileArray(t, dir)
	d, err := volume.Open(t.Context(), "raid:"+strings.Join(paths, ","), volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := d.(*Array)
	defer a.Close()
	if a.bm == nil {
		t.Fatal("the test array has no write-intent bitmap")
	}
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			a.Status()
			n++
		}
	}()
	for i := range 5 {
		if err := a.FailMember(paths[1], false); err != nil {
			t.Fatal(err)
		}
		spare := filepath.Join(dir, "spare"+string(rune('0'+i)))
		addSpare(t, a, spare)
		paths[1] = spare
	}
	close(stop)
	t.Logf("%d status calls during 5 rebuilds", <-done)
}

// addSpare creates an 8 MiB member file at path, adds it to a and waits for its
// rebuild.
func addSpare(t *testing.T, a *Array, path string) {
	t.Helper()
	sd, err := volume.Open(t.Context(), path, volume.Options{Create: true, Size: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AddMember(sd, path); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitRebuild(t.Context()); err != nil {
		t.Fatal(err)
	}
}
