package master

import (
	"sync/atomic"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// requestCounts counts the client requests the master ran, by message type
// (types below maxCounted; all client messages are): a debugging aid that
// shows the master round trips a workload costs, and lets tests check that a
// path skips one.
type requestCounts [maxCounted]atomic.Uint64

const maxCounted = 0x400

func (r *requestCounts) add(t proto.MsgType) {
	if t < maxCounted {
		r[t].Add(1)
	}
}

// Requests returns how many client requests of type t the master has run
// (a retried request answered from its recorded answer counts once).
func (m *Master) Requests(t proto.MsgType) uint64 {
	if t >= maxCounted {
		return 0
	}
	return m.requests[t].Load()
}

// OpenCount returns the handles clients hold open on ino (for tests and
// tools).
func (m *Master) OpenCount(ino uint64) int { return m.meta.OpenCount(ino) }
