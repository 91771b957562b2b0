package raid

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/volume"
)

// fileArray creates a RAID-5 of three files in dir and returns their paths.
func fileArray(t *testing.T, dir string) []string {
	t.Helper()
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
	return paths
}

// TestControlSocket serves an array through volume.Open, as `rampart target serve`
// does, and manages it over the control socket: status, fail, add with a background
// rebuild and its progress; a second assembly is refused naming the pid.
func TestControlSocket(t *testing.T) {
	run := t.TempDir()
	t.Setenv("RAMPART_RUN_DIR", run)
	dir := t.TempDir()
	paths := fileArray(t, dir)
	spec := "raid:" + strings.Join(paths, ",")
	d, err := volume.Open(t.Context(), spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer blockdev.Close(d)
	want := bytes.Repeat([]byte("control!"), 4<<20/8)
	if _, err := d.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	u, devs, err := ArrayOf(t.Context(), paths)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 3 {
		t.Errorf("ArrayOf: got %d member UUIDs, want 3", len(devs))
	}
	if !Served(u) {
		t.Fatalf("array %s not served at %s", u, SocketPath(u))
	}
	if fi, err := os.Stat(SocketPath(u)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: mode %v, err %v; want 0600", SocketPath(u), fi.Mode(), err)
	}
	call := func(req Request) Response {
		t.Helper()
		resp, err := Call(t.Context(), u, req)
		if err != nil {
			t.Fatalf("%s: %v", req.Op, err)
		}
		return resp
	}
	st := call(Request{Op: OpStatus})
	if !st.OK || st.Status.ServedBy != os.Getpid() || st.Status.Active != 3 || st.Status.Degraded || st.Status.Progress != 1 {
		t.Errorf("status: got %+v, want ok, served by %d, 3 active, not degraded, progress 1", st.Status, os.Getpid())
	}

	// An offline command cannot assemble it meanwhile.
	ms, err := OpenMembers(t.Context(), paths, true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Assemble(t.Context(), ms, AssembleOptions{ReadOnly: true, Lock: true})
	CloseMembers(ms)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second assembly: got %v, want %v naming pid %d", err, ErrInUse, os.Getpid())
	}

	// Fail a member by another path to the same file, with its device UUID.
	other := filepath.Join(dir, ".", "a")
	if r := call(Request{Op: OpFail, Member: other, MemberUUID: devs[paths[0]].String()}); !r.OK || !r.Status.Degraded || r.Status.Active != 2 {
		t.Fatalf("fail: got %+v", r)
	}
	// Failing another one would lose data: refused without force.
	if r := call(Request{Op: OpFail, Member: paths[1]}); r.OK || !strings.Contains(r.Error, "force") {
		t.Errorf("second fail: got %+v, want a refusal naming --force", r)
	}
	slow, fast := int64(2<<20), int64(2<<20)
	spare := filepath.Join(dir, "spare") // does not exist: created
	r := call(Request{Op: OpAdd, New: spare, MinSpeed: &slow, MaxSpeed: &fast})
	if !r.OK || !r.Status.Rebuilding || r.Status.Recovery == nil || !strings.Contains(r.Status.Mdstat, "recovery =") {
		t.Fatalf("add: got %+v, want a rebuild in progress", r)
	}
	// The JSON the CLI prints has the fields the drill reads.
	b, _ := json.Marshal(r.Status)
	for _, k := range []string{`"level":5`, `"raid_devices":3`, `"active":2`, `"degraded":true`, `"rebuilding":true`, `"progress":`} {
		if !bytes.Contains(b, []byte(k)) {
			t.Errorf("status JSON %s: missing %s", b, k)
		}
	}
	lastProgress := -1.0
	deadline := time.Now().Add(60 * time.Second)
	for {
		r = call(Request{Op: OpStatus})
		if !r.Status.Rebuilding {
			break
		}
		if r.Status.Progress < lastProgress {
			t.Errorf("progress went back from %.3f to %.3f", lastProgress, r.Status.Progress)
		}
		lastProgress = r.Status.Progress
		if time.Now().After(deadline) {
			t.Fatalf("rebuild still running after 60 s: %s", r.Status.Mdstat)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.Status.Degraded || r.Status.Progress != 1 || !strings.Contains(r.Status.Mdstat, "[3/3] [UUU]") {
		t.Fatalf("after rebuild: got %+v", r.Status)
	}
	// The spare holds the data: fail another member and read everything back.
	if r := call(Request{Op: OpFail, Member: paths[1]}); !r.OK {
		t.Fatalf("fail %s after rebuild: %s", paths[1], r.Error)
	}
	got := make([]byte, len(want))
	if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Errorf("read after rebuild onto the spare, %s failed: err %v, data right %v", paths[1], err, bytes.Equal(got, want))
	}
	if err := blockdev.Close(d); err != nil {
		t.Fatal(err)
	}
	if Served(u) {
		t.Errorf("still served after Close")
	}
	if _, err := os.Stat(SocketPath(u)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
	if _, err := Call(t.Context(), u, Request{Op: OpStatus}); !errors.Is(err, ErrNotServed) {
		t.Errorf("call after Close: got %v, want %v", err, ErrNotServed)
	}
	// Now an offline assembly takes the lock.
	ms, err = OpenMembers(t.Context(), []string{"", paths[2], spare}, false)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Assemble(t.Context(), ms, AssembleOptions{Lock: true})
	if err != nil {
		CloseMembers(ms)
		t.Fatalf("offline assembly after Close: %v", err)
	}
	a.Close()
	if ents, _ := os.ReadDir(filepath.Join(run, "raid")); len(ents) != 0 {
		t.Errorf("run dir after Close: %v, want it empty", ents)
	}
}

// TestServeWaitsForReadOnlyLook: a read-only assembly (what `rampart raid status` does
// when nobody serves the array) takes the lock shared and briefly; a process opening
// the array to serve it meanwhile waits for it instead of failing, while a second
// writer is still refused at once.
func TestServeWaitsForReadOnlyLook(t *testing.T) {
	t.Setenv("RAMPART_RUN_DIR", t.TempDir())
	paths := fileArray(t, t.TempDir())
	ms, err := OpenMembers(t.Context(), paths, true)
	if err != nil {
		t.Fatal(err)
	}
	look, err := Assemble(t.Context(), ms, AssembleOptions{ReadOnly: true, NoAutoRebuild: true, Lock: true})
	if err != nil {
		t.Fatal(err)
	}
	// A second read-only look shares the lock.
	ms2, err := OpenMembers(t.Context(), paths, true)
	if err != nil {
		t.Fatal(err)
	}
	look2, err := Assemble(t.Context(), ms2, AssembleOptions{ReadOnly: true, NoAutoRebuild: true, Lock: true})
	if err != nil {
		t.Fatalf("second read-only assembly: %v, want the lock shared", err)
	}
	look2.Close()
	go func() { time.Sleep(300 * time.Millisecond); look.Close() }()
	start := time.Now()
	d, err := volume.Open(t.Context(), "raid:"+strings.Join(paths, ","), volume.Options{})
	if err != nil {
		t.Fatalf("serving open while a read-only look held the lock: %v, want it to wait", err)
	}
	defer blockdev.Close(d)
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("the serving open took %v: it did not wait for the read-only holder", waited)
	}
	ms3, err := OpenMembers(t.Context(), paths, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Assemble(t.Context(), ms3, AssembleOptions{Lock: true})
	CloseMembers(ms3)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("offline writer while served: got %v, want %v naming pid %d", err, ErrInUse, os.Getpid())
	}
}
