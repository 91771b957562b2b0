package target

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

func readCapacity10(t *testing.T, i *ini) uint32 {
	t.Helper()
	r := i.scsiCmd([]byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8)
	if r.status != 0 || len(r.data) != 8 {
		t.Fatalf("READ CAPACITY(10): got status %#x sense %x", r.status, r.sense)
	}
	return binary.BigEndian.Uint32(r.data) + 1
}

func wantCapacityChanged(t *testing.T, i *ini, what string) {
	t.Helper()
	r := i.scsiCmd(make([]byte, 6), 0)
	if k, asc := senseASC(r); r.status != 2 || k != 6 || asc != 0x2a09 {
		t.Fatalf("%s: got status %#x sense %x, want UNIT ATTENTION 2A/09 CAPACITY DATA HAS CHANGED", what, r.status, r.sense)
	}
	if r := i.scsiCmd(make([]byte, 6), 0); r.status != 0 {
		t.Fatalf("%s: second TEST UNIT READY: got status %#x sense %x, want GOOD", what, r.status, r.sense)
	}
}

func TestCapacityChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grow.img")
	cfg := testConfig(path)
	cfg.Backstores[0].Size = 1 << 20
	cfg.Targets[0].PortalGroups = []PortalGroup{
		{Tag: 1, Portals: []string{"127.0.0.1:0"}},
		{Tag: 2, Portals: []string{"127.0.0.2:0"}},
	}
	s := startServer(t, cfg)
	a, b := dial(t, s.Addrs()[0]), dial(t, s.Addrs()[1])
	b.isid[5] = 7
	a.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	b.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	if got := readCapacity10(t, a); got != 2048 {
		t.Fatalf("got %d blocks, want 2048", got)
	}

	// The file grows behind the server's back; RefreshSizes (what `serve` does every
	// second and on SIGHUP) notices, every nexus hears of it once.
	if err := os.Truncate(path, 3<<20); err != nil {
		t.Fatal(err)
	}
	s.RefreshSizes()
	for name, i := range map[string]*ini{"TPG 1": a, "TPG 2": b} {
		wantCapacityChanged(t, i, name)
		if got := readCapacity10(t, i); got != 6144 {
			t.Fatalf("%s: got %d blocks after growing, want 6144", name, got)
		}
	}
	s.RefreshSizes()
	if r := a.scsiCmd(make([]byte, 6), 0); r.status != 0 {
		t.Fatalf("RefreshSizes with no change: got status %#x sense %x, want GOOD", r.status, r.sense)
	}

	// `rampart target backstore resize` grows the file and records the size: Apply
	// keeps the logical unit (no POWER ON), reports the new capacity.
	if err := os.Truncate(path, 4<<20); err != nil {
		t.Fatal(err)
	}
	cfg.Backstores[0].Size = 4 << 20
	if err := s.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	wantCapacityChanged(t, a, "after Apply")
	if got := readCapacity10(t, a); got != 8192 {
		t.Fatalf("got %d blocks after Apply, want 8192", got)
	}
	if r := a.read(8191, 1); r.status != 0 {
		t.Fatalf("read of the last block: got status %#x sense %x", r.status, r.sense)
	}
}
