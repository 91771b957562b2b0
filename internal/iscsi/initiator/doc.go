// Package initiator is rampart's iSCSI initiator: SendTargets discovery, login with
// CHAP (one-way and mutual) and operational negotiation, and a full-feature session
// that keeps many commands in flight within the target's CmdSN window, sends immediate
// and unsolicited data and answers R2Ts, checks header and data digests, and pings the
// target with NOP-Out to find a dead path quickly (even while a write is stuck on a
// full socket buffer: the ping never waits for the writer). Options.DialContext lets
// tests cut a link under a session (package initiatortest).
//
// A Session is one connection to one target portal; it never retries by itself: a
// command that cannot complete fails with ErrSessionFailed. A Client is the session
// as iscsid keeps it: it logs in again in the background when the connection drops
// and holds commands up to the replacement timeout, then sends them again. A LUN
// reached through either is a blockdev.Device (see LUN), so the multipath layer, RAID
// and every frontend can use a remote LUN as they use a local file.
//
// Also here: what a multipath layer reads of a LUN (identity from VPD 0x83, ALUA
// target port groups from REPORT TARGET PORT GROUPS, SET TARGET PORT GROUPS for
// explicit ALUA, the sense codes that say a port is inactive or the states changed),
// REPORT LUNS, and node records (iscsiadm's
// /etc/iscsi/nodes files) for `rampart iscsi login`.
package initiator
