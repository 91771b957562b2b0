// Package initiator is rampart's iSCSI initiator: SendTargets discovery, login with
// CHAP (one-way and mutual) and operational negotiation, and a full-feature session
// that keeps many commands in flight within the target's CmdSN window, sends immediate
// and unsolicited data and answers R2Ts, checks header and data digests, and pings the
// target with NOP-Out to find a dead path quickly.
//
// A Session is one connection to one target portal. A LUN reached through a session is
// a blockdev.Device (see LUN), so the multipath layer, RAID and every frontend can use a
// remote LUN as they use a local file. A session never retries by itself: a command
// that cannot complete fails with ErrSessionFailed, and the layer above (multipath)
// decides whether to retry on another path or to reconnect.
package initiator
