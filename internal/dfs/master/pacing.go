package master

import "github.com/rampart-storage/rampart/internal/dfs/proto"

// MaxDeletesPerBeat bounds the copies of freed chunks a chunkserver is told
// to delete in one reply to its heartbeat (every 2 s by default); the rest
// wait in the master's list for the following heartbeats.
//
// Deleting a chunk file costs its chunkserver a truncate and a rename (or an
// unlink) of a few hundred microseconds of kernel CPU. Unlinking 1000 small
// files frees 2000 copies at goal 2: without a bound the next heartbeat of
// each chunkserver deleted all of them at once, which on a small machine
// took as much CPU as the unlinks themselves and slowed whatever ran at that
// moment (perf of `rampart server` in an unlink loop: 47 % of its CPU in
// Store.Delete). Freed space is reclaimed a little later instead: 256 copies
// per heartbeat is 128 per second per chunkserver with the default
// heartbeat. MooseFS bounds its deletions the same way, much lower
// (CHUNKS_SOFT_DEL_LIMIT 10, CHUNKS_HARD_DEL_LIMIT 25 per chunkserver);
// HDFS at 1000 blocks per 3 s heartbeat.
//
// Stale copies found at registration are listed at once, whatever their
// number: they must never be served.
const MaxDeletesPerBeat = 256

// takeDeletesLocked removes from the pending list of chunkserver addr, and
// returns, at most room copies to delete (MaxDeletesPerBeat minus what the
// reply already lists). Called with m.mu held.
func (m *Master) takeDeletesLocked(addr string, room int) []proto.ChunkRef {
	pend := m.pendingDel[addr]
	n := min(len(pend), max(0, room))
	if n == len(pend) {
		delete(m.pendingDel, addr)
		return pend
	}
	out := pend[:n:n]
	m.pendingDel[addr] = pend[n:]
	return out
}
