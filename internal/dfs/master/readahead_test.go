package master_test

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// TestReadAheadSeesWrites reads a file sequentially in 128 KiB pieces (so
// the client's read-ahead fetches MiBs ahead of the reader) while the data
// just ahead of the reader changes: by this client's WriteAt and
// WriteAtAsync, by a truncate, and by another client
// followed by an open (close-to-open). Every read must see the change.
func TestReadAheadSeesWrites(t *testing.T) {
	c := newCluster(t, 3, nil)
	cl, other := c.client(), c.client()
	ctx := t.Context()
	const size = 24 << 20
	model := randomBytes(size)
	a := writeFile(t, cl, "f", model)
	rng := rand.New(rand.NewPCG(7, 8))
	const piece = 128 << 10
	buf := make([]byte, piece)
	for off := 0; off < size; off += piece {
		if off%(2<<20) == 0 && off+3<<20 <= len(model) {
			p := make([]byte, 1+rng.IntN(300<<10))
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			woff := off + 1<<20 + rng.IntN(1<<20)
			woff = min(woff, size-len(p))
			var err error
			switch off >> 21 % 4 {
			case 0:
				err = cl.WriteAt(ctx, a.Ino, p, int64(woff))
			case 1:
				err = cl.WriteAtAsync(ctx, a.Ino, p, int64(woff))
			case 2:
				if err = other.WriteAt(ctx, a.Ino, p, int64(woff)); err == nil {
					if _, err = cl.Open(ctx, a.Ino, 0); err == nil {
						err = cl.Release(ctx, a.Ino)
					}
				}
			case 3:
				// Truncate: the reader then meets the new end.
				_, err = cl.Setattr(ctx, a.Ino, client.SetAttr{Valid: proto.SetSize, Size: uint64(woff)})
				model, p = model[:woff], nil
			}
			if err != nil {
				t.Fatalf("change at %d: %v", woff, err)
			}
			copy(model[woff:], p)
		}
		n, err := cl.ReadAt(ctx, a.Ino, buf, int64(off))
		want := max(0, min(piece, len(model)-off))
		if err != nil || n != want {
			t.Fatalf("read at %d: %d bytes, %v; want %d bytes", off, n, err, want)
		}
		if !bytes.Equal(buf[:n], model[off:off+n]) {
			t.Fatalf("read at %d differs from the file's data", off)
		}
	}
}
