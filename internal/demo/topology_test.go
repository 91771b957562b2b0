package demo

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rampart-storage/rampart/internal/iscsi/target"
	"github.com/rampart-storage/rampart/internal/volume"
)

func TestHostsAddressesAreUniqueAndInTheirNetworks(t *testing.T) {
	subnets := map[string]netip.Prefix{}
	for _, n := range Networks() {
		subnets[n.Name] = netip.MustParsePrefix(n.Subnet)
	}
	seen := map[netip.Addr]string{netip.MustParseAddr(HostAddr): "this machine"}
	for _, h := range Hosts() {
		for _, l := range h.Links {
			p, err := netip.ParsePrefix(l.Addr)
			if err != nil {
				t.Fatalf("%s %s: %v", h.Name, l.Dev, err)
			}
			if !subnets[l.Dev].Contains(p.Addr()) {
				t.Errorf("%s %s: %s not in network %s %s", h.Name, l.Dev, p.Addr(), l.Dev, subnets[l.Dev])
			}
			if other, dup := seen[p.Addr()]; dup {
				t.Errorf("%s %s: %s already used by %s", h.Name, l.Dev, p.Addr(), other)
			}
			seen[p.Addr()] = h.Name
		}
	}
	// The seed's addresses: storage .1 on both networks, chunk1 .101, the master on .250.1.
	if got, want := ChunkStorageAddr(1, 2), "10.3.2.101"; got != want {
		t.Errorf("ChunkStorageAddr(1, 2) = %s, want %s", got, want)
	}
	if MasterAddr != "10.3.250.1" {
		t.Errorf("MasterAddr = %s, want the seed's 10.3.250.1", MasterAddr)
	}
}

func TestIPCommandsBuildEveryLinkWithValidNames(t *testing.T) {
	cmds := IPCommands()
	var created []string // namespaces, in order
	devs := map[string]bool{}
	for _, c := range cmds {
		line := strings.Join(c, " ")
		if len(c) == 3 && c[0] == "netns" && c[1] == "add" {
			created = append(created, c[2])
		}
		for i, a := range c {
			if (a == "add" && i+1 < len(c) && c[i-1] == "link") || a == "name" {
				dev := c[i+1]
				if len(dev) > 15 {
					t.Errorf("%q: interface name %q longer than 15 bytes", line, dev)
				}
				devs[dev] = true
			}
		}
		// Every namespace a command names exists before it.
		for i, a := range c {
			if (a == "-n" || a == "netns") && i+1 < len(c) && c[i+1] != "add" && !slices.Contains(created, c[i+1]) {
				t.Errorf("%q: namespace %s used before it is created", line, c[i+1])
			}
		}
	}
	if !slices.Equal(created, Namespaces()) {
		t.Errorf("namespaces created %v, want %v", created, Namespaces())
	}
	for _, ns := range created {
		if !strings.HasPrefix(ns, NSPrefix) {
			t.Errorf("namespace %s lacks the prefix %s that down looks for", ns, NSPrefix)
		}
	}
	for _, h := range Hosts() {
		for _, l := range h.Links {
			if !devs[h.SwitchDev(l)] {
				t.Errorf("no switch port %s for %s %s", h.SwitchDev(l), h.Name, l.Dev)
			}
		}
	}
	if !devs[HostLink] {
		t.Errorf("no %s link from this machine", HostLink)
	}
}

func TestTargetConfigLoadsAsTheSeedsStorageNode(t *testing.T) {
	topo := Topology{Dir: "/demo", Bin: "/bin/rampart"}
	path := filepath.Join(t.TempDir(), "target.yaml")
	var serials []string
	for n := 0; n < Chunks*LUNs; n++ {
		serials = append(serials, fmt.Sprintf("%d123456789abcdef", n))
	}
	if err := os.WriteFile(path, []byte(topo.TargetConfig(serials)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := target.LoadFile(path)
	if err != nil {
		t.Fatalf("the generated configuration does not load: %v\n%s", err, topo.TargetConfig(serials))
	}
	if len(cfg.Backstores) != Chunks*LUNs || len(cfg.Targets) != Chunks {
		t.Fatalf("got %d backstores and %d targets, want %d and %d", len(cfg.Backstores), len(cfg.Targets), Chunks*LUNs, Chunks)
	}
	seenSerial := map[string]bool{}
	for i := 1; i <= Chunks; i++ {
		tg := cfg.Targets[i-1]
		array := "raid:" + strings.Join(topo.ArrayMembers(i-1), ",")
		if len(tg.LUNs) != LUNs {
			t.Fatalf("target %d LUNs %+v, want %d", i, tg.LUNs, LUNs)
		}
		for l := 0; l < LUNs; l++ {
			b := cfg.Backstores[(i-1)*LUNs+l]
			// LUN l is part l+1 of chunk host i's array, which the volume kind opens.
			n, m, inner, err := volume.ParsePart(b.Volume)
			if err != nil || n != l+1 || m != LUNs || inner != array {
				t.Errorf("backstore %s volume %q: part %d/%d of %q (%v), want part %d/%d of %q", b.Name, b.Volume, n, m, inner, err, l+1, LUNs, array)
			}
			if seenSerial[b.Serial] || b.Serial != serials[(i-1)*LUNs+l] {
				t.Errorf("backstore %s serial %q: not its own (%q)", b.Name, b.Serial, serials[(i-1)*LUNs+l])
			}
			seenSerial[b.Serial] = true
			if tg.LUNs[l].LUN != uint64(l) || tg.LUNs[l].Backstore != b.Name {
				t.Errorf("target %d LUN %+v, want LUN %d = %s", i, tg.LUNs[l], l, b.Name)
			}
		}
		if tg.IQN != TargetIQN(i) {
			t.Errorf("target %d IQN %s, want %s", i, tg.IQN, TargetIQN(i))
		}
		if len(tg.PortalGroups) != 2 || tg.PortalGroups[0].Portals[0] != "10.3.1.1:3260" || tg.PortalGroups[1].Portals[0] != "10.3.2.1:3260" {
			t.Errorf("target %d portal groups %+v, want one per storage network", i, tg.PortalGroups)
		}
		if len(tg.ACLs) != 1 || tg.ACLs[0].InitiatorIQN != InitiatorIQN(i) || tg.OpenAccess {
			t.Errorf("target %d ACLs %+v (open %v), want only %s", i, tg.ACLs, tg.OpenAccess, InitiatorIQN(i))
		}
	}
}

func TestArraysUseEveryDiskOnce(t *testing.T) {
	topo := Topology{Dir: "/demo"}
	seen := map[string]bool{}
	for a := 0; a < Chunks; a++ {
		for _, m := range topo.ArrayMembers(a) {
			if seen[m] {
				t.Errorf("disk %s in two arrays", m)
			}
			seen[m] = true
		}
	}
	if len(seen) != 3*Chunks || seen[topo.Spare()] {
		t.Errorf("arrays use %d disks (spare among them: %v), want %d and not the spare", len(seen), seen[topo.Spare()], 3*Chunks)
	}
}

func TestRoleCommandLines(t *testing.T) {
	topo := Topology{Dir: "/demo", Bin: "/bin/rampart"}
	for l, m := range []string{"mpatha", "mpathb"} {
		attach := strings.Join(topo.AttachArgs(2, l), " ")
		for _, want := range []string{
			fmt.Sprintf("attach --fuse /demo/chunk2/lun%d --name %s", l, m),
			"--policy failover --no-path-retry 100 --queue-if-no-path --polling-interval 2s",
			"--initiator-name " + InitiatorIQN(2) + " --status-dir /demo/chunk2/multipath",
			fmt.Sprintf("iscsi://10.3.1.1:3260/%s/%d iscsi://10.3.2.1:3260/%s/%d", TargetIQN(2), l, TargetIQN(2), l),
		} {
			if !strings.Contains(attach, want) {
				t.Errorf("attach args %q lack %q", attach, want)
			}
		}
		if got, want := topo.LUNFile(2, l), fmt.Sprintf("/demo/chunk2/lun%d/%s", l, m); got != want {
			t.Errorf("LUNFile(2, %d) = %q, want %q", l, got, want)
		}
	}
	cs := strings.Join(topo.ChunkserverArgs(3), " ")
	if want := "chunkserver --data /demo/chunk3/mnt/data_chunk1,/demo/chunk3/mnt/data_chunk2 --master 10.3.250.1:9420 --listen 10.3.250.103:9422"; !strings.HasPrefix(cs, want) {
		t.Errorf("chunkserver args %q, want prefix %q", cs, want)
	}
	if got, want := strings.Join(topo.MountArgs(), " "), "mount /demo/web/mnt/www --master 10.3.250.1:9421"; got != want {
		t.Errorf("mount args %q, want %q", got, want)
	}
	if got := strings.Join(topo.WebArgs(), " "); !strings.Contains(got, "--listen 10.3.250.80:80") {
		t.Errorf("web args %q do not listen on the web host's port 80", got)
	}
	conf := NginxConf("/demo/web", topo.WebMount())
	for _, want := range []string{"root /demo/web/mnt/www;", "listen 10.3.250.80:80;", "pid /demo/web/nginx.pid;"} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx.conf lacks %q:\n%s", want, conf)
		}
	}
}

func TestExecArgsDropsNsenter(t *testing.T) {
	argv := inNS("rampart-web", "/bin/rampart", "mount", "/x")
	if got, want := execArgs(argv), []string{"/bin/rampart", "mount", "/x"}; !slices.Equal(got, want) {
		t.Errorf("execArgs(%q) = %q, want %q", argv, got, want)
	}
	if got := inNS("", "a", "b"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("inNS without a namespace = %q, want the command alone", got)
	}
}
