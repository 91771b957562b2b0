// Package raid builds RAID arrays (levels 0, 1, 5, 6 and 10) in user space out of any
// blockdev.Devices, and is itself a blockdev.Device.
//
// Every member carries a versioned, CRC-protected superblock (superblock.go, documented
// in docs/formats/raid-superblock.md) naming the array, the member's role and an event
// counter; Assemble finds the roles from the superblocks and refuses foreign or stale
// members by name. RAID-5 parity is XOR (crypto/subtle.XORBytes); RAID-6 P and Q come
// from github.com/klauspost/reedsolomon (SIMD).
//
// The RAID-5/6 write hole is closed by a stripe journal kept in a reserved area of
// every member (journal.go): the stripes of a request are made durable in the journal,
// in one write and one flush per member, before they are touched in place, and
// replayed at assembly (docs/decisions/2026-11-22-raid-write-hole.md). Arrays created
// with CoW (PolicyCoW; `--journal cow`, not the CLI's default while a RAID-6 bug
// found by TestModelConcurrent is open) write full stripes to spare stripes instead
// and move a stripe map kept in per-stripe tags, so that a full stripe is written once
// (cow.go, docs/decisions/2026-12-03-raid-cow-full-stripes.md); their partial-stripe
// writes still go through the journal. A write-intent
// bitmap (bitmap.go) marks the regions where members may differ: after an unclean stop
// only they are resynced, and a member that was briefly absent is re-added with a
// rebuild of only them.
//
// Degraded reads reconstruct; a member that fails is marked faulty in the other
// members' superblocks; failures beyond the level's tolerance fail the array (every
// I/O then returns ErrFailed). Rebuild onto a new member is throttled between a
// minimum and a maximum speed (rebuild.go); scrub checks and repairs parity or mirror
// mismatches (scrub.go).
//
// Management requests (control.go) — status, fail, remove, add, replace, check,
// repair — are handled by Array.Handle. A process that opens an array through
// volume.Open serves them on a unix control socket and holds the array's lock in
// RunDir() (control_socket.go), so `rampart raid` commands act on the live array and
// an offline assembly of a served array is refused, naming the pid.
package raid
