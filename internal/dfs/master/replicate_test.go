package master

import (
	"bytes"
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

func TestSortEndangered(t *testing.T) {
	job := func(id uint64, have, goal int) repJob {
		return repJob{c: meta.Chunk{ID: id}, have: make([]string, have), goal: goal}
	}
	under := []repJob{job(1, 2, 3), job(2, 1, 2), job(3, 1, 3), job(4, 2, 5)}
	sortEndangered(under)
	var got []uint64
	for _, j := range under {
		got = append(got, j.c.ID)
	}
	want := []uint64{3, 2, 4, 1} // one copy (missing 2, then 1), then two copies (missing 3, then 1)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order: got %v, want %v", got, want)
		}
	}
}

func FuzzDecodeIntent(f *testing.F) {
	for _, in := range []*intent{
		{typ: 0x0303, pre: 7},
		{typ: 0x0308, pre: 0, answered: true, reply: []byte{1, 2, 3}},
		{typ: 0x030b, pre: 9, answered: true, err: &proto.ErrorReply{Errno: 17, Message: "exists"}},
	} {
		f.Add(in.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, ok := decodeIntent(b)
		if !ok {
			return
		}
		if got := in.encode(); !bytes.Equal(got, b) {
			t.Fatalf("intent re-encodes to %x, want %x", got, b)
		}
	})
}
