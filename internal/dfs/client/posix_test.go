package client

import (
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

func FuzzDecodeOpenReply(f *testing.F) {
	var a proto.Attr
	a.Ino, a.Mode, a.Size = 7, 0o100644, 4096
	var ae, le, ok, none proto.Enc
	a.Encode(&ae)
	(&proto.ChunkLoc{ID: 3, Version: 1, Servers: []string{"127.0.0.1:9422", "127.0.0.1:9423"}}).Encode(&le)
	ok.Bytes(ae.B)
	ok.Bytes(le.B)
	none.Bytes(ae.B)
	none.Bytes(nil)
	f.Add(ok.B)
	f.Add(none.B)
	f.Add(ae.B)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ab, loc, err := decodeOpenReply(b)
		if err != nil {
			return
		}
		var a proto.Attr
		_ = a.Decode(ab)
		if loc != nil {
			var e proto.Enc
			loc.Encode(&e)
			var back proto.ChunkLoc
			if err := back.Decode(e.B); err != nil {
				t.Fatalf("decoded location does not round-trip: %v", err)
			}
		}
	})
}

func TestDecodeOpenReply(t *testing.T) {
	var a proto.Attr
	a.Ino = 9
	var ae, le, b proto.Enc
	a.Encode(&ae)
	(&proto.ChunkLoc{ID: 5, Version: 2, Servers: []string{"x:1"}}).Encode(&le)
	b.Bytes(ae.B)
	b.Bytes(le.B)
	ab, loc, err := decodeOpenReply(b.B)
	if err != nil || loc == nil || loc.ID != 5 || loc.Version != 2 || len(loc.Servers) != 1 || string(ab) != string(ae.B) {
		t.Fatalf("decodeOpenReply = %x, %+v, %v", ab, loc, err)
	}
	if _, _, err := decodeOpenReply(ae.B); err == nil {
		t.Error("a bare Attr accepted as an OpenLoc reply")
	}
}

// TestMutationsIgnoreInterrupts: only requests that read the master's state may be
// abandoned when the caller is interrupted; a change goes through to its answer.
func TestMutationsIgnoreInterrupts(t *testing.T) {
	for _, tt := range []struct {
		t    proto.MsgType
		read bool
	}{
		{proto.MsgLookup, true}, {proto.MsgGetattr, true}, {proto.MsgReadChunk, true}, {proto.MsgGetlk, true},
		{proto.MsgUnlink, false}, {proto.MsgCreateOpen, false}, {proto.MsgRename, false}, {proto.MsgSetattr, false},
		{proto.MsgSetxattr, false}, {proto.MsgWriteChunk, false}, {proto.MsgWriteEnd, false}, {proto.MsgRelease, false},
		{proto.MsgSetlk, false}, {proto.MsgOpen, false},
	} {
		if got := readOnly(tt.t); got != tt.read {
			t.Errorf("readOnly(%#x) = %v, want %v", tt.t, got, tt.read)
		}
	}
}
