// Package scsi emulates a SCSI direct-access block device (SBC-3/SPC-4) on top of a
// blockdev.Device, for the iSCSI target and any later transport.
//
// A transport builds a Command per SCSI task (the CDB, all data-out, the initiator's
// expected lengths) and calls Dispatcher.Execute with the LUNMap the nexus may see.
// The Dispatcher answers REPORT LUNS and commands to unmapped LUNs itself and hands the
// rest to the LogicalUnit, which returns status, fixed-format sense data, data-in and
// residuals. Execute is safe to call concurrently for many commands.
//
// Concepts:
//
//   - Nexus: the I_T nexus (initiator port + target port). Unit attentions are kept per
//     nexus: POWER ON/RESET at the first command of a new nexus (INQUIRY, REPORT LUNS
//     and REQUEST SENSE do not consume it), RESERVATIONS PREEMPTED/RELEASED,
//     REGISTRATIONS PREEMPTED, CAPACITY DATA HAS CHANGED (CapacityChanged), MODE
//     PARAMETERS CHANGED, ASYMMETRIC ACCESS STATE CHANGED (AccessStateChanged).
//   - Reservations: SPC-2 RESERVE/RELEASE and SPC-4 persistent reservations (pr.go,
//     prout.go) with all six types; the conflict check on the I/O path is one atomic
//     load while no reservation or registration exists. With APTPL the state is saved
//     atomically to LUConfig.PRStatePath (format: docs/formats/scsi-pr-state.md).
//   - Ordering: COMPARE AND WRITE and ORWRITE take the unit's I/O lock exclusively,
//     ordinary writes take it shared, so they never serialise each other.
//   - Thin provisioning: when the device is a blockdev.Unmapper the unit reports LBPME,
//     LBPU/LBPWS and serves UNMAP, WRITE SAME with UNMAP and GET LBA STATUS (holes of a
//     sparse file are deallocated).
//   - ALUA: implicit only (TPGS 01b); REPORT TARGET PORT GROUPS (both formats) comes
//     from Nexus.Groups, and media access through a standby or unavailable group gets
//     NOT READY 04/0B or 04/0C (alua.go). A transport that changes a state hands later
//     commands a Nexus with the new Groups and calls AccessStateChanged (2A/06).
//
// Residuals follow SAM/iSCSI: a read returns at most the expected length (Overflow
// when the CDB asked for more, Underflow when less), a write writes the whole blocks
// the initiator sent, at most what the CDB asks for.
package scsi
