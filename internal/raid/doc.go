// Package raid builds RAID arrays (levels 0, 1, 5, 6 and 10) in user space out of any
// blockdev.Devices, and is itself a blockdev.Device.
//
// Every member carries a versioned, CRC-protected superblock (superblock.go, documented
// in docs/formats/raid-superblock.md) naming the array, the member's role and an event
// counter; Assemble finds the roles from the superblocks and refuses foreign or stale
// members by name. RAID-5 parity is XOR (crypto/subtle.XORBytes); RAID-6 P and Q come
// from github.com/klauspost/reedsolomon (SIMD). The RAID-5/6 write hole is closed by a
// stripe journal kept in a reserved area of every member (journal.go): a stripe update
// is made durable in the journal before the stripe is touched in place, and replayed at
// assembly. Degraded reads reconstruct; a member that fails is marked faulty in the
// other members' superblocks; failures beyond the level's tolerance fail the array
// (every I/O then returns ErrFailed). Rebuild onto a new member is throttled between a
// minimum and a maximum speed (rebuild.go); scrub checks and repairs parity or mirror
// mismatches (scrub.go).
package raid
