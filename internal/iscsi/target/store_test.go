package target

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func testStore(t testing.TB) *Store {
	t.Helper()
	return &Store{Path: filepath.Join(t.TempDir(), "etc", "target.yaml")}
}

func sampleConfig() Config {
	return Config{
		Backstores: []Backstore{{Name: "disk0", Volume: "/var/lib/rampart/d0.img", Size: 1 << 30, BlockSize: 4096, Serial: "0123456789abcdef"}},
		Targets: []Target{{
			IQN:          "iqn.2026-11.org.rampart:t0",
			PortalGroups: []PortalGroup{{Tag: 1, Portals: []string{"10.3.1.1:3260"}}, {Tag: 2, Portals: []string{"10.3.2.1:3260"}}},
			LUNs:         []LUN{{LUN: 0, Backstore: "disk0"}},
			ACLs: []ACL{{
				InitiatorIQN: "iqn.2026-11.org.rampart:client",
				MappedLUNs:   []MappedLUN{{LUN: 5, TargetLUN: 0}},
				CHAP:         &CHAP{User: "u", Secret: "secret-secret"},
			}},
		}},
		DiscoveryCHAP: &CHAP{User: "d", Secret: "discovery-secret"},
	}
}

func TestStoreRoundTrip(t *testing.T) {
	s := testStore(t)
	got, err := s.Load()
	if err != nil {
		t.Fatalf("Load of missing file: got error %v, want empty config", err)
	}
	if !reflect.DeepEqual(got, Config{}) {
		t.Fatalf("Load of missing file: got %+v, want empty config", got)
	}
	want := sampleConfig()
	if err := s.Save(want); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, err = s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip: got %+v, want %+v", got, want)
	}
	fi, err := os.Stat(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode: got %o, want 600 (it holds CHAP secrets)", perm)
	}
	data, _ := os.ReadFile(s.Path)
	if !strings.Contains(string(data), "\nversion: 1\n") {
		t.Errorf("saved file lacks version: %s", data)
	}
}

func TestDecodeRefuses(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "empty file"},
		{"no version", "backstores: []\n", `missing "version: 1"`},
		{"future version", "version: 2\n", "unknown version 2"},
		{"unknown field", "version: 1\nbackstore: []\n", "unknown field"},
		{"unknown nested field", "version: 1\ntargets:\n- iqn: iqn.2026-11.org.x:y\n  lunz: []\n", "unknown field"},
		{"not yaml", "version: [1\n", "yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode(%q): got nil error, want %q", tt.in, tt.want)
			}
			if !errors.Is(err, ErrConfigFile) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode(%q): got %v, want ErrConfigFile mentioning %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestLoadFileValidates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t.yaml")
	in := "version: 1\ntargets:\n- iqn: iqn.2026-11.org.x:y\n  luns:\n  - lun: 3\n    backstore: disk9\n"
	if err := os.WriteFile(p, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(p)
	if err == nil || !strings.Contains(err.Error(), `LUN 3: unknown backstore "disk9"`) {
		t.Fatalf("LoadFile: got %v, want an error naming LUN 3 and disk9", err)
	}
}

func TestSaveRefusesInvalid(t *testing.T) {
	s := testStore(t)
	cfg := sampleConfig()
	cfg.Targets[0].LUNs[0].Backstore = "nope"
	if err := s.Save(cfg); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Save of invalid config: got %v, want ErrInvalidConfig", err)
	}
	if _, err := os.Stat(s.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("invalid config was written: stat got %v, want not exist", err)
	}
}

func TestSaveBackupRotation(t *testing.T) {
	s := testStore(t)
	s.Backups = 3
	save := func(i int) {
		t.Helper()
		cfg := Config{Backstores: []Backstore{{Name: "b", Volume: "/v", Size: int64(i + 1)}}}
		if err := s.Save(cfg); err != nil {
			t.Fatalf("Save %d: %v", i, err)
		}
	}
	sizeOf := func(path string) int64 {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		cfg, err := Decode(data)
		if err != nil {
			t.Fatalf("decode %s: %v", path, err)
		}
		return cfg.Backstores[0].Size
	}
	for i := 0; i < 6; i++ {
		save(i)
	}
	// Saving the same content again must not rotate.
	save(5)
	if got, want := sizeOf(s.Path), int64(6); got != want {
		t.Errorf("current: got size %d, want %d", got, want)
	}
	for i, want := range []int64{5, 4, 3} {
		if got := sizeOf(s.Path + "." + string(rune('1'+i))); got != want {
			t.Errorf("backup .%d: got size %d, want %d", i+1, got, want)
		}
	}
	if _, err := os.Stat(s.Path + ".4"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backup .4 with Backups=3: stat got %v, want not exist", err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(s.Path), ".target.yaml.tmp*"))
	if len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestUpdateFailedEditWritesNothing(t *testing.T) {
	s := testStore(t)
	if err := s.Save(sampleConfig()); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(s.Path)
	err := s.Update(func(c *Config) error { return c.AddTarget("iqn.2026-11.org.rampart:t0") })
	if !errors.Is(err, ErrEdit) {
		t.Fatalf("Update adding a duplicate target: got %v, want ErrEdit", err)
	}
	after, _ := os.ReadFile(s.Path)
	if string(before) != string(after) {
		t.Fatalf("failed edit changed the file")
	}
}

// TestConcurrentUpdates adds LUNs from two goroutines through separate Stores (as two
// CLI processes would) and checks that none of the 40 edits is lost.
func TestConcurrentUpdates(t *testing.T) {
	s := testStore(t)
	const iqn = "iqn.2026-11.org.rampart:t0"
	err := s.Update(func(c *Config) error {
		if err := c.AddBackstore(Backstore{Name: "b", Volume: "/v"}); err != nil {
			return err
		}
		return c.AddTarget(iqn)
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &Store{Path: s.Path}
			for i := 0; i < 20; i++ {
				errs <- st.Update(func(c *Config) error {
					_, err := c.AddLUN(iqn, "b", nil)
					return err
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	cfg, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	luns := cfg.Target(iqn).LUNs
	if len(luns) != 40 {
		t.Fatalf("LUNs after 2x20 concurrent adds: got %d, want 40", len(luns))
	}
	for i, l := range luns {
		if l.LUN != uint64(i) {
			t.Fatalf("LUN #%d: got %d, want %d", i, l.LUN, i)
		}
	}
}

func FuzzLoad(f *testing.F) {
	seed, _ := Encode(sampleConfig())
	f.Add(seed)
	f.Add([]byte("version: 1\n"))
	f.Add([]byte("version: 1\ntargets:\n- iqn: x\n  portal_groups:\n  - tag: 70000\n"))
	f.Add([]byte("{\"version\": 1, \"backstores\": [{\"name\": 1}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Decode(data)
		if err != nil {
			return
		}
		if Validate(cfg) != nil {
			return
		}
		out, err := Encode(cfg)
		if err != nil {
			t.Fatalf("Encode of a decoded config: %v", err)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode of Encode output: %v\n%s", err, out)
		}
		again, err := Encode(back)
		if err != nil || string(again) != string(out) {
			t.Fatalf("Encode not stable across a round trip:\n%s\n%s", out, again)
		}
	})
}

// TestSeedExample loads examples/seed-target.yaml, the seed lab's storage node.
func TestSeedExample(t *testing.T) {
	cfg, err := LoadFile(filepath.Join("..", "..", "..", "examples", "seed-target.yaml"))
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	if got, want := len(cfg.Backstores), 3; got != want {
		t.Errorf("backstores: got %d, want %d", got, want)
	}
	if got, want := len(cfg.Targets), 3; got != want {
		t.Fatalf("targets: got %d, want %d", got, want)
	}
	for i, tg := range cfg.Targets {
		n := string(rune('1' + i))
		if want := "iqn.2024-12.tp2.b3:data-chunk" + n; tg.IQN != want {
			t.Errorf("target #%d: got %s, want %s", i, tg.IQN, want)
		}
		if len(tg.PortalGroups) != 2 || tg.PortalGroups[0].Portals[0] != "10.3.1.1:3260" || tg.PortalGroups[1].Portals[0] != "10.3.2.1:3260" {
			t.Errorf("target %s: got portal groups %+v, want 10.3.1.1:3260 and 10.3.2.1:3260 in TPGs 1 and 2", tg.IQN, tg.PortalGroups)
		}
		if want := "iqn.2024-12.tp2.b3:data-chunk" + n + ":chunk" + n + "-initiator"; len(tg.ACLs) != 1 || tg.ACLs[0].InitiatorIQN != want || tg.OpenAccess {
			t.Errorf("target %s: got ACLs %+v open %v, want only %s", tg.IQN, tg.ACLs, tg.OpenAccess, want)
		}
		if len(tg.LUNs) != 1 || tg.LUNs[0].Backstore != "data-chunk"+n {
			t.Errorf("target %s: got LUNs %+v, want LUN 0 -> data-chunk%s", tg.IQN, tg.LUNs, n)
		}
	}
}
