package master

import (
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// inlineClient reports whether a client request is answered on the goroutine
// that reads its connection (proto.ServeConnInline) instead of one of its
// own: requests that hold the metadata lock for microseconds and wait for
// nothing else. A stat, an open, a small file's read or an unlink then
// costs the master no goroutine start (nor the growth of a new goroutine's
// stack) and no hand-over between goroutines.
//
//   - the namespace reads and the handle counting of opening a file (not a
//     truncating Open: it may wait for chunkservers to drop the freed
//     chunks);
//   - ReadChunk, except while the master holds it after a restart until the
//     chunk's copies register (awaitCopies);
//   - the namespace changes that travel in a SessionOp (create, link,
//     unlink, rename) and Release (whose last handle of an unlinked file
//     deletes it) in SyncInterval mode, where a commit waits only for
//     pebble's write(2) of the log record. In SyncAlways mode a commit waits
//     for an fsync, which concurrent requests of a connection share only if
//     each has a goroutine of its own.
//
// Everything else (WriteChunk, WriteEnd, Setattr, locks, MetaSync...) may
// wait for a lock, a peer or an fsync, and would hold up every later request
// of the client.
func (m *Master) inlineClient(f *proto.Frame) bool {
	switch f.Type {
	case proto.MsgLookup, proto.MsgGetattr, proto.MsgGetxattr, proto.MsgListxattr:
		return true
	case proto.MsgRelease:
		// The last handle of an unlinked file deletes it: a commit.
		return m.cfg.MetaSync.Sync == meta.SyncInterval
	case proto.MsgOpen:
		d := proto.NewDec(f.Payload)
		d.U64()
		flags := d.U32()
		return d.Err() == nil && flags&proto.OpenTrunc == 0
	case proto.MsgReadChunk:
		return !m.restarted || time.Since(m.started) > m.cfg.HeartbeatTimeout
	case proto.MsgSessionOp:
		if m.cfg.MetaSync.Sync != meta.SyncInterval {
			return false
		}
		d := proto.NewDec(f.Payload)
		d.U64() // session
		d.U64() // seq
		switch proto.MsgType(d.U32()) {
		case proto.MsgCreate, proto.MsgCreateOpen, proto.MsgCreateOpenLoc, proto.MsgLink, proto.MsgUnlink, proto.MsgRename:
			return d.Err() == nil
		}
	}
	return false
}
