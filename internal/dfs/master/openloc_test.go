package master_test

import (
	"bytes"
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// TestOpenCarriesChunkLocation: an Open with proto.OpenLoc answers the
// attributes and chunk 0's copies as ReadChunk would; a file without data
// gets no location; reads after a client's Open see the data another client
// wrote since (close-to-open), also after the file was truncated and
// rewritten (new chunk).
func TestOpenCarriesChunkLocation(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := t.Context()
	w, r := c.client(), c.client()
	data := randomBytes(4096)
	a := writeFile(t, w, "f", data)
	if err := w.Sync(ctx, a.Ino); err != nil {
		t.Fatal(err)
	}
	raw, err := proto.Dial(ctx, c.clAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	open := func(ino uint64) ([]byte, []byte) {
		var e proto.Enc
		e.U64(ino)
		e.U32(proto.OpenLoc)
		b, err := raw.Call(ctx, proto.MsgOpen, e.B)
		if err != nil {
			t.Fatal(err)
		}
		d := proto.NewDec(b)
		ab, lb := d.Bytes(), d.Bytes()
		if err := d.Finish(); err != nil {
			t.Fatal(err)
		}
		var got proto.Attr
		if err := got.Decode(ab); err != nil || got.Ino != ino {
			t.Fatalf("open reply attr: %+v, %v", got, err)
		}
		return ab, lb
	}
	_, lb := open(a.Ino)
	var e proto.Enc
	e.U64(a.Ino)
	e.U32(0)
	want, err := raw.Call(ctx, proto.MsgReadChunk, e.B)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(lb, want) {
		t.Errorf("open's location %x, ReadChunk's %x", lb, want)
	}
	empty, err := w.Create(ctx, proto.RootIno, "empty", regular(0o644))
	if err != nil {
		t.Fatal(err)
	}
	if _, lb := open(empty.Ino); len(lb) != 0 {
		t.Errorf("empty file: location %x, want none", lb)
	}

	buf := make([]byte, 8192)
	read := func(want []byte) {
		t.Helper()
		if _, err := r.Open(ctx, a.Ino, 0); err != nil {
			t.Fatal(err)
		}
		n, err := r.ReadAt(ctx, a.Ino, buf, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("read %d bytes, not the %d written", n, len(want))
		}
		if err := r.Release(ctx, a.Ino); err != nil {
			t.Fatal(err)
		}
	}
	read(data)
	// Rewrite through a truncate (chunk freed, a new one allocated).
	if _, err := w.Open(ctx, a.Ino, proto.OpenTrunc); err != nil {
		t.Fatal(err)
	}
	data2 := randomBytes(6000)
	if err := w.WriteAt(ctx, a.Ino, data2, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(ctx, a.Ino); err != nil {
		t.Fatal(err)
	}
	read(data2)
}
