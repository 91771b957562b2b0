package demo

import (
	"errors"
	"io/fs"
	"testing"
)

func TestStateRoundTripAndRestartReplacesTheRole(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadState(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadState of an empty dir: got %v, want fs.ErrNotExist", err)
	}
	st := NewState(dir, "/bin/rampart", "netns")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.AddNamespace("rampart-storage"))
	must(st.AddProcess(Process{Role: "master", Pid: 100, Args: []string{"rampart", "master"}}))
	must(st.AddProcess(Process{Role: "chunkserver chunk1", Pid: 101}))
	must(st.AddProcess(Process{Role: "master", Pid: 200, Args: []string{"rampart", "master"}}))
	must(st.AddMount("/demo/chunk1/lun"))
	must(st.AddLoop(Loop{Dev: "/dev/loop7", File: "/demo/chunk1/lun0/mpatha"}))

	got, err := LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Processes) != 2 {
		t.Fatalf("got %d processes, want 2 (the restarted master replaces the first): %+v", len(got.Processes), got.Processes)
	}
	if p, ok := got.FindProcess("master"); !ok || p.Pid != 200 {
		t.Errorf("master = %+v, %v; want pid 200", p, ok)
	}
	if len(got.Namespaces) != 1 || len(got.Mounts) != 1 || len(got.Loops) != 1 || got.Mode != "netns" {
		t.Errorf("state read back %+v", got)
	}
	must(got.RemoveProcess("master"))
	again, _ := LoadState(dir)
	if _, ok := again.FindProcess("master"); ok {
		t.Errorf("master still recorded after RemoveProcess")
	}
}

func TestDecodeStateRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"not JSON", "{"},
		{"other version", `{"version": 2}`},
		{"no version", `{}`},
		{"pid 1", `{"version": 1, "processes": [{"role": "x", "pid": 1}]}`},
		{"negative pid", `{"version": 1, "processes": [{"role": "x", "pid": -5}]}`},
	} {
		if _, err := DecodeState([]byte(tc.in), "state.json"); err == nil {
			t.Errorf("%s: DecodeState(%s) accepted it", tc.name, tc.in)
		}
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"version": 1, "dir": "/d", "processes": [{"role": "master", "pid": 42, "args": ["a"]}], "loops": [{"dev": "/dev/loop0", "file": "/d/f"}]}`))
	f.Add([]byte(`{"version": 1}`))
	f.Add([]byte(`{"version": 1, "processes": [{"pid": 0}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodeState(b, "fuzz")
		if err != nil {
			return
		}
		for _, p := range st.Processes {
			if p.Pid <= 1 {
				t.Errorf("accepted pid %d", p.Pid)
			}
		}
	})
}

func TestIsAttachDir(t *testing.T) {
	topo := Topology{Dir: "/demo"}
	for l := 0; l < LUNs; l++ {
		if !isAttachDir(topo.AttachDir(2, l)) {
			t.Errorf("%s is an attach's mount", topo.AttachDir(2, l))
		}
	}
	for _, m := range []string{"/demo/chunk1/lun", "/demo/chunk1/lun12"} {
		if !isAttachDir(m) {
			t.Errorf("%s is an attach's mount", m)
		}
	}
	for _, m := range []string{topo.DataDir(1, 0), topo.DataDir(1, 1), topo.WebMount(), "/demo/chunk1/lunar"} {
		if isAttachDir(m) {
			t.Errorf("%s is not an attach's mount", m)
		}
	}
}
