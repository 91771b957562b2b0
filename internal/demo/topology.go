package demo

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultDir is where the demo keeps its disks, mounts, logs and state file.
const DefaultDir = "/var/lib/rampart/demo"

// NSPrefix starts the name of every network namespace the demo creates, so that
// `rampart demo down` finds leftovers even without a state file.
const NSPrefix = "rampart-"

// HostLink is the interface that joins this machine's own namespace to the service
// network, so that the site and the master answer from here too.
const HostLink = "rampart0"

// The lab's networks: two storage networks and the service network of the seed.
const (
	NetStorage1 = "st1"
	NetStorage2 = "st2"
	NetService  = "svc"
)

// Chunks is the number of chunk hosts (and of RAID arrays and targets).
const Chunks = 3

// LUNs is the number of LUNs each chunk host attaches (the seed's mpatha and mpathb):
// its target exports its array cut in this many equal parts (part:N/M:raid:...).
const LUNs = 2

// DiskSize is the size of each file-backed (sparse) disk: three make a RAID 5 array
// of twice this, room for a few dozen 64 MiB chunks.
const DiskSize = 512 << 20

// IQNPrefix names targets and initiators (the seed's iqn.2024-12.tp2.b3, in our domain).
const IQNPrefix = "iqn.2026-11.lab.rampart"

// Ports of the roles (MooseFS's, as in docs/design.md).
const (
	PortISCSI       = 3260
	PortMasterCS    = 9420
	PortMasterCl    = 9421
	PortChunkserver = 9422
	PortConsole     = 9425 // the master's web console and /metrics
	PortWeb         = 80
)

// Topology is the lab: names, addresses, files and command lines, all derived from
// the demo directory. It does no I/O.
type Topology struct {
	Dir     string // the demo directory (DefaultDir)
	Bin     string // the rampart binary every role runs
	Verbose bool   // roles log debug messages (rampart -v)
}

// argv is the full command line of a role: the binary, -v if verbose, args.
func (t Topology) argv(args []string) []string {
	out := []string{t.Bin}
	if t.Verbose {
		out = append(out, "-v")
	}
	return append(out, args...)
}

// Host is one machine of the lab: a network namespace and its interfaces.
type Host struct {
	Name  string // storage, chunk1, ..., master, web
	Links []Link
}

// NS is the host's network namespace.
func (h Host) NS() string { return NSPrefix + h.Name }

// Link is one interface of a host, plugged into one network's bridge.
type Link struct {
	Dev  string // name in the host: st1, st2, svc
	Addr string // ADDR/24
}

// SwitchDev is the name of the link's other end, in the switch namespace.
func (h Host) SwitchDev(l Link) string { return h.Name + "-" + l.Dev }

// SwitchNS is the namespace holding one bridge per network.
const SwitchNS = NSPrefix + "switch"

// Networks lists the networks: the name of each bridge in the switch and its /24.
func Networks() []struct{ Name, Subnet string } {
	return []struct{ Name, Subnet string }{
		{NetStorage1, "10.3.1.0/24"}, {NetStorage2, "10.3.2.0/24"}, {NetService, "10.3.250.0/24"},
	}
}

// StorageAddr is the storage host's address on storage network n (1 or 2).
func StorageAddr(n int) string { return fmt.Sprintf("10.3.%d.1", n) }

// ChunkStorageAddr is chunk host i's address on storage network n.
func ChunkStorageAddr(i, n int) string { return fmt.Sprintf("10.3.%d.%d", n, 100+i) }

// Service network addresses.
const (
	MasterAddr = "10.3.250.1"
	WebAddr    = "10.3.250.80"
	HostAddr   = "10.3.250.254" // this machine, through HostLink
)

// ChunkServiceAddr is chunk host i's address on the service network.
func ChunkServiceAddr(i int) string { return fmt.Sprintf("10.3.250.%d", 100+i) }

// ChunkName is the name of chunk host i (1-based).
func ChunkName(i int) string { return "chunk" + strconv.Itoa(i) }

// Hosts lists the lab's machines in the order they are built.
func Hosts() []Host {
	hs := []Host{{Name: "storage", Links: []Link{
		{NetStorage1, StorageAddr(1) + "/24"}, {NetStorage2, StorageAddr(2) + "/24"}}}}
	for i := 1; i <= Chunks; i++ {
		hs = append(hs, Host{Name: ChunkName(i), Links: []Link{
			{NetStorage1, ChunkStorageAddr(i, 1) + "/24"}, {NetStorage2, ChunkStorageAddr(i, 2) + "/24"},
			{NetService, ChunkServiceAddr(i) + "/24"}}})
	}
	hs = append(hs, Host{Name: "master", Links: []Link{{NetService, MasterAddr + "/24"}}},
		Host{Name: "web", Links: []Link{{NetService, WebAddr + "/24"}}})
	return hs
}

// Namespaces lists every namespace the demo creates, the switch first.
func Namespaces() []string {
	ns := []string{SwitchNS}
	for _, h := range Hosts() {
		ns = append(ns, h.NS())
	}
	return ns
}

// IPCommands are the `ip` invocations (arguments after "ip") that build the networks:
// namespaces, one bridge per network in the switch, one veth pair per host link, and
// HostLink from this machine to the service network.
func IPCommands() [][]string {
	var cmds [][]string
	add := func(args ...string) { cmds = append(cmds, args) }
	for _, ns := range Namespaces() {
		add("netns", "add", ns)
		add("-n", ns, "link", "set", "lo", "up")
	}
	for _, n := range Networks() {
		add("-n", SwitchNS, "link", "add", "br-"+n.Name, "type", "bridge")
		add("-n", SwitchNS, "link", "set", "br-"+n.Name, "up")
	}
	for _, h := range Hosts() {
		for _, l := range h.Links {
			add("-n", h.NS(), "link", "add", l.Dev, "type", "veth", "peer", "name", h.SwitchDev(l), "netns", SwitchNS)
			add("-n", h.NS(), "addr", "add", l.Addr, "dev", l.Dev)
			add("-n", h.NS(), "link", "set", l.Dev, "up")
			add("-n", SwitchNS, "link", "set", h.SwitchDev(l), "master", "br-"+l.Dev, "up")
		}
	}
	add("link", "add", HostLink, "type", "veth", "peer", "name", "host-"+NetService, "netns", SwitchNS)
	add("addr", "add", HostAddr+"/24", "dev", HostLink)
	add("link", "set", HostLink, "up")
	add("-n", SwitchNS, "link", "set", "host-"+NetService, "master", "br-"+NetService, "up")
	return cmds
}

// Storage host files.

// Disk is the file of disk n (1..9), member n-1 mod 3 of array (n-1)/3.
func (t Topology) Disk(n int) string {
	return filepath.Join(t.Dir, "storage", fmt.Sprintf("disk%d.img", n))
}

// Spare is the file the drill rebuilds a failed member onto.
func (t Topology) Spare() string { return filepath.Join(t.Dir, "storage", "spare.img") }

// ArrayMembers are the member files of array a (0-based, md0..md2).
func (t Topology) ArrayMembers(a int) []string {
	return []string{t.Disk(3*a + 1), t.Disk(3*a + 2), t.Disk(3*a + 3)}
}

// TargetConfigPath is the storage host's target configuration.
func (t Topology) TargetConfigPath() string { return filepath.Join(t.Dir, "storage", "target.yaml") }

// TargetIQN is the target of chunk host i (the seed's data-chunkN).
func TargetIQN(i int) string { return fmt.Sprintf("%s:data-chunk%d", IQNPrefix, i) }

// InitiatorIQN is chunk host i's initiator name, the only one its target admits.
func InitiatorIQN(i int) string { return fmt.Sprintf("%s:chunk%d", IQNPrefix, i) }

// BackstoreName is the backstore of chunk host i's LUN l (0-based): part l+1 of array
// md(i-1), like the seed's partitions.
func BackstoreName(i, l int) string { return fmt.Sprintf("data-chunk%d-part%d", i, l+1) }

// BackstoreVolume is the volume spec of BackstoreName(i, l): part l+1 of LUNs of the
// array of chunk host i. Both parts share the one assembled array in the target.
func (t Topology) BackstoreVolume(i, l int) string {
	return fmt.Sprintf("part:%d/%d:raid:%s", l+1, LUNs, strings.Join(t.ArrayMembers(i-1), ","))
}

// TargetConfig is the storage host's target configuration (docs/target.md): per array
// (raid: of its three disks) LUNs backstores, each a part of it; one target per chunk
// host exporting its array's parts as LUN 0 and LUN 1, with a portal group on each
// storage network and one ACL, its chunk host's. serials holds one unit serial per
// backstore (Chunks*LUNs, chunk host by chunk host), so the LUNs keep their identity
// for the demo's life.
func (t Topology) TargetConfig(serials []string) string {
	var b strings.Builder
	b.WriteString("# Written by `rampart demo`: the seed lab's storage node.\nversion: 1\nbackstores:\n")
	for i := 1; i <= Chunks; i++ {
		for l := 0; l < LUNs; l++ {
			fmt.Fprintf(&b, "- name: %s\n  volume: %s\n  serial: %s\n", BackstoreName(i, l),
				t.BackstoreVolume(i, l), serials[(i-1)*LUNs+l])
		}
	}
	b.WriteString("targets:\n")
	for i := 1; i <= Chunks; i++ {
		fmt.Fprintf(&b, "- iqn: %s\n  portal_groups:\n", TargetIQN(i))
		for n := 1; n <= 2; n++ {
			fmt.Fprintf(&b, "  - tag: %d\n    portals: [\"%s:%d\"]\n", n, StorageAddr(n), PortISCSI)
		}
		b.WriteString("  luns:\n")
		for l := 0; l < LUNs; l++ {
			fmt.Fprintf(&b, "  - lun: %d\n    backstore: %s\n", l, BackstoreName(i, l))
		}
		fmt.Fprintf(&b, "  acls:\n  - initiator_iqn: %s\n", InitiatorIQN(i))
	}
	return b.String()
}

// LUNURLs are the two paths of chunk host i's LUN l, one per storage network.
func LUNURLs(i, l int) []string {
	return []string{
		fmt.Sprintf("iscsi://%s:%d/%s/%d", StorageAddr(1), PortISCSI, TargetIQN(i), l),
		fmt.Sprintf("iscsi://%s:%d/%s/%d", StorageAddr(2), PortISCSI, TargetIQN(i), l),
	}
}

// Chunk host files.

// ChunkDir is chunk host i's directory.
func (t Topology) ChunkDir(i int) string { return filepath.Join(t.Dir, ChunkName(i)) }

// AttachDir is where chunk host i's LUN l appears as the file MapName(l): the FUSE
// mount of its attach (lun0, lun1).
func (t Topology) AttachDir(i, l int) string {
	return filepath.Join(t.ChunkDir(i), fmt.Sprintf("lun%d", l))
}

// MapName is the multipath map of LUN l on every chunk host, as in the seed: mpatha
// for LUN 0, mpathb for LUN 1.
func MapName(l int) string { return "mpath" + string(rune('a'+l)) }

// LUNFile is chunk host i's attached LUN l.
func (t Topology) LUNFile(i, l int) string { return filepath.Join(t.AttachDir(i, l), MapName(l)) }

// StatusDir is where chunk host i's attaches keep their multipath status (one file per map).
func (t Topology) StatusDir(i int) string { return filepath.Join(t.ChunkDir(i), "multipath") }

// DataDir is the XFS mount of chunk host i's LUN l, a data folder of its chunkserver
// (the seed's /mnt/data_chunk1 on mpatha, /mnt/data_chunk2 on mpathb).
func (t Topology) DataDir(i, l int) string {
	return filepath.Join(t.ChunkDir(i), "mnt", fmt.Sprintf("data_chunk%d", l+1))
}

// DataDirs are chunk host i's data folders, one per LUN.
func (t Topology) DataDirs(i int) []string {
	var ds []string
	for l := 0; l < LUNs; l++ {
		ds = append(ds, t.DataDir(i, l))
	}
	return ds
}

// MasterDir is the master's metadata directory.
func (t Topology) MasterDir() string { return filepath.Join(t.Dir, "master", "meta") }

// WebMount is where the web host mounts the file system (/mnt/www).
func (t Topology) WebMount() string { return filepath.Join(t.Dir, "web", "mnt", "www") }

// SiteURL is the site's address, reachable from this machine through HostLink.
func SiteURL() string { return fmt.Sprintf("http://%s/", WebAddr) }

// ConsoleURL is the master's web console (MooseFS's mfscgiserv on 9425 in the seed),
// reachable from this machine through HostLink; /metrics is under it.
func ConsoleURL() string { return fmt.Sprintf("http://%s:%d/", MasterAddr, PortConsole) }

// MasterClientAddr is the address clients (mount, info) use.
func MasterClientAddr() string { return fmt.Sprintf("%s:%d", MasterAddr, PortMasterCl) }

// Command lines of the roles (arguments after the binary).

// TargetArgs serves the storage host's configuration.
func (t Topology) TargetArgs() []string {
	return []string{"target", "serve", "--config", t.TargetConfigPath(),
		"--state-dir", filepath.Join(t.Dir, "storage", "target-state")}
}

// AttachArgs attaches chunk host i's LUN l with the seed's multipath.conf settings
// (failover, no_path_retry 100, queue_if_no_path, polling_interval 2). An attach shows
// one LUN in its FUSE mount, so each LUN has its own attach.
func (t Topology) AttachArgs(i, l int) []string {
	args := []string{"attach", "--fuse", t.AttachDir(i, l), "--name", MapName(l),
		"--policy", "failover", "--no-path-retry", "100", "--queue-if-no-path", "--polling-interval", "2s",
		"--initiator-name", InitiatorIQN(i), "--status-dir", t.StatusDir(i)}
	return append(args, LUNURLs(i, l)...)
}

// MasterArgs runs the master on the service network.
func (t Topology) MasterArgs() []string {
	return []string{"master", "--dir", t.MasterDir(),
		"--listen", MasterClientAddr(), "--cs-listen", fmt.Sprintf("%s:%d", MasterAddr, PortMasterCS),
		"--http", fmt.Sprintf("%s:%d", MasterAddr, PortConsole)}
}

// ChunkserverArgs runs chunk host i's chunkserver on its XFS.
func (t Topology) ChunkserverArgs(i int) []string {
	addr := fmt.Sprintf("%s:%d", ChunkServiceAddr(i), PortChunkserver)
	return []string{"chunkserver", "--data", strings.Join(t.DataDirs(i), ","), "--master", fmt.Sprintf("%s:%d", MasterAddr, PortMasterCS),
		"--listen", addr, "--advertise", addr}
}

// MountArgs mounts the file system on the web host.
func (t Topology) MountArgs() []string {
	return []string{"mount", t.WebMount(), "--master", MasterClientAddr()}
}

// WebArgs serves the site from the mount with rampart's own static file server.
func (t Topology) WebArgs() []string {
	return []string{"demo", "web", "--root", t.WebMount(), "--listen", fmt.Sprintf("%s:%d", WebAddr, PortWeb)}
}

// NginxConf is the web host's nginx configuration when nginx is installed, as in the
// lab: the site's root is the file system's mount. Everything nginx writes (pid, logs,
// temporary files) stays under dir.
func NginxConf(dir, root string) string {
	return fmt.Sprintf(`# Written by `+"`rampart demo`"+`: the lab's web server, serving from the DFS mount.
user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log;
events { worker_connections 64; }
http {
    access_log %[1]s/nginx-access.log;
    client_body_temp_path %[1]s/tmp;
    proxy_temp_path %[1]s/tmp;
    fastcgi_temp_path %[1]s/tmp;
    uwsgi_temp_path %[1]s/tmp;
    scgi_temp_path %[1]s/tmp;
    server {
        listen %[3]s:%[4]d;
        root %[2]s;
        index index.html;
    }
}
`, dir, root, WebAddr, PortWeb)
}
