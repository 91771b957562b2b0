package master

import (
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// TestInlineClient lists which client requests the master answers on the
// connection's reading goroutine: those that never wait. A request that can
// wait (a commit, a truncate waiting for chunkservers, a lock, a ReadChunk
// held after a restart) must get a goroutine of its own, or it would hold up
// every later request of the client.
func TestInlineClient(t *testing.T) {
	open := func(flags uint32) []byte {
		var e proto.Enc
		e.U64(5)
		e.U32(flags)
		return e.B
	}
	sessionOp := func(t proto.MsgType) []byte {
		var e proto.Enc
		(&proto.SessionOp{Session: 1, Seq: 2, Type: t, Payload: []byte{0}}).Encode(&e)
		return e.B
	}
	fresh := &Master{}
	syncAlways := &Master{cfg: Config{MetaSync: meta.Options{Sync: meta.SyncAlways}}}
	restarted := &Master{restarted: true, started: time.Now(), cfg: Config{HeartbeatTimeout: time.Minute}}
	settled := &Master{restarted: true, started: time.Now().Add(-2 * time.Minute), cfg: Config{HeartbeatTimeout: time.Minute}}
	tests := []struct {
		name string
		m    *Master
		f    proto.Frame
		want bool
	}{
		{"lookup", fresh, proto.Frame{Type: proto.MsgLookup}, true},
		{"getattr", fresh, proto.Frame{Type: proto.MsgGetattr}, true},
		{"getxattr", fresh, proto.Frame{Type: proto.MsgGetxattr}, true},
		{"listxattr", fresh, proto.Frame{Type: proto.MsgListxattr}, true},
		{"release", fresh, proto.Frame{Type: proto.MsgRelease}, true},
		{"release, fsync per commit", syncAlways, proto.Frame{Type: proto.MsgRelease}, false},
		{"open", fresh, proto.Frame{Type: proto.MsgOpen, Payload: open(proto.OpenLoc)}, true},
		{"open truncating", fresh, proto.Frame{Type: proto.MsgOpen, Payload: open(proto.OpenTrunc | proto.OpenLoc)}, false},
		{"open malformed", fresh, proto.Frame{Type: proto.MsgOpen, Payload: []byte{1}}, false},
		{"readchunk", fresh, proto.Frame{Type: proto.MsgReadChunk}, true},
		{"readchunk just after a restart", restarted, proto.Frame{Type: proto.MsgReadChunk}, false},
		{"readchunk after the restart hold", settled, proto.Frame{Type: proto.MsgReadChunk}, true},
		{"unlink", fresh, proto.Frame{Type: proto.MsgSessionOp, Payload: sessionOp(proto.MsgUnlink)}, true},
		{"createopenloc", fresh, proto.Frame{Type: proto.MsgSessionOp, Payload: sessionOp(proto.MsgCreateOpenLoc)}, true},
		{"rename", fresh, proto.Frame{Type: proto.MsgSessionOp, Payload: sessionOp(proto.MsgRename)}, true},
		{"unlink, fsync per commit", syncAlways, proto.Frame{Type: proto.MsgSessionOp, Payload: sessionOp(proto.MsgUnlink)}, false},
		{"writechunk in a sessionop", fresh, proto.Frame{Type: proto.MsgSessionOp, Payload: sessionOp(proto.MsgWriteChunk)}, false},
		{"sessionop malformed", fresh, proto.Frame{Type: proto.MsgSessionOp, Payload: []byte{1, 2}}, false},
		{"writechunk", fresh, proto.Frame{Type: proto.MsgWriteChunk}, false},
		{"writeend", fresh, proto.Frame{Type: proto.MsgWriteEnd}, false},
		{"setattr", fresh, proto.Frame{Type: proto.MsgSetattr}, false},
		{"setlk", fresh, proto.Frame{Type: proto.MsgSetlk}, false},
		{"metasync", fresh, proto.Frame{Type: proto.MsgMetaSync}, false},
	}
	for _, tc := range tests {
		if got := tc.m.inlineClient(&tc.f); got != tc.want {
			t.Errorf("%s: inline got %v, want %v", tc.name, got, tc.want)
		}
	}
}
