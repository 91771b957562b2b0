// Package demo builds the seed lab (seed 000) on one machine and rehearses its failures.
//
// The lab is six machines: a storage host with three RAID 5 arrays of three disks,
// exported as three iSCSI targets over two storage networks, each target's array cut
// in two LUNs (part:1/2 and part:2/2 of it); three chunk hosts, each attaching its two
// LUNs (mpatha, mpathb) over both networks with multipath, XFS on each, and a
// chunkserver storing on both; a master; and a web host mounting the distributed file
// system and serving a site from it.
//
// As root, each machine is a network namespace (rampart-storage, rampart-chunk1, ...)
// wired to a "switch" namespace holding one bridge per network, so that
// `ip -n rampart-chunk1 link set st1 down` cuts one path exactly as pulling a cable
// would. Every role is a real `rampart` process (target serve, attach --fuse, master,
// chunkserver, mount) started with nsenter --net only: the mounts they make stay in
// the machine's mount namespace, where losetup, mkfs.xfs and the other processes see
// them (`ip netns exec` would give each a private mount namespace).
//
// What the demo creates is listed in a state file (DIR/state.json) as it goes, so that
// `rampart demo down`, or the next `rampart demo` after a crash, removes exactly that:
// processes by their pid, mounts, loop devices, namespaces.
//
// The pure parts (Topology: addresses, names, the target configuration, command
// lines; the state file; the lsblk/df-style tables) are unit-tested; the rest is
// exercised by scripts/drills/demo.sh as root.
package demo
