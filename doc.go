// Package rampart is highly-available storage for ordinary Linux machines in one Go
// binary, with no kernel module of its own.
//
// The tree has the shape of the storage stack (see docs/design.md):
//
//	cmd/rampart        the binary: one file per subcommand group, flags only
//	internal/blockdev  Device, the one interface at the bottom, and its test suite
//	internal/volume    volume specs: one string names any volume
//	internal/raid      RAID 0/1/5/6/10 over any Devices
//	internal/scsi      SCSI emulation over a Device, transport-independent
//	internal/iscsi     iSCSI protocol (both sides); target/ is the server
//	internal/dfs       the distributed file system: master, chunkservers, client, FUSE
//
// Imports go down the stack only; internal/archtest fails the build of the tests when a
// lower layer imports a higher one.
package rampart
