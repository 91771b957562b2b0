package proto

import (
	"bytes"
	"testing"
)

func TestChunkSyncRoundTrip(t *testing.T) {
	in := ChunkSync{Chunks: []ChunkRef{{ID: 1, Version: 2}, {ID: 1 << 40, Version: 7}}}
	var e Enc
	in.Encode(&e)
	var got ChunkSync
	if err := got.Decode(e.B); err != nil || len(got.Chunks) != 2 || got.Chunks[1] != in.Chunks[1] {
		t.Fatalf("ChunkSync round trip = %+v, %v; want %+v", got, err, in)
	}
	r := ChunkSyncReply{Errnos: []uint32{0, 2}}
	e = Enc{}
	r.Encode(&e)
	var gr ChunkSyncReply
	if err := gr.Decode(e.B); err != nil || len(gr.Errnos) != 2 || gr.Errnos[1] != 2 {
		t.Fatalf("ChunkSyncReply round trip = %+v, %v", gr, err)
	}
	e = Enc{}
	e.U32(MaxSyncChunks + 1)
	if err := got.Decode(e.B); err == nil {
		t.Error("ChunkSync with too many chunks accepted")
	}
	if MsgChunkSync.String() != "ChunkSync" || MsgMetaSync.String() != "MetaSync" || MsgLockReclaim.String() != "LockReclaim" {
		t.Errorf("names: %s %s %s", MsgChunkSync, MsgMetaSync, MsgLockReclaim)
	}
}

func FuzzDecodeDurability(f *testing.F) {
	for _, m := range []interface{ Encode(*Enc) }{
		&ChunkSync{Chunks: []ChunkRef{{ID: 3, Version: 1}}},
		&ChunkSyncReply{Errnos: []uint32{0, 5}},
	} {
		var e Enc
		m.Encode(&e)
		f.Add(e.B)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s ChunkSync
		if s.Decode(b) == nil {
			var e Enc
			s.Encode(&e)
			if !bytes.Equal(e.B, b) {
				t.Fatalf("ChunkSync re-encodes to %x, want %x", e.B, b)
			}
		}
		var r ChunkSyncReply
		if r.Decode(b) == nil {
			var e Enc
			r.Encode(&e)
			if !bytes.Equal(e.B, b) {
				t.Fatalf("ChunkSyncReply re-encodes to %x, want %x", e.B, b)
			}
		}
	})
}
