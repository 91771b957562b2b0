package initiator_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/testutil"
)

// TestReadAtPipe reads through a pipe (NBD's path): the data arrives in the pipe when
// the session can splice, and in the buffer, whole, when it cannot (data digests on)
// or when the pipe fills part way (the read is done again into memory).
func TestReadAtPipe(t *testing.T) {
	url := testutil.StartTarget(t, 16<<20)
	data := make([]byte, 4<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, tc := range []struct {
		name      string
		o         initiator.Options
		pipeBytes int
		wantPiped bool
	}{
		{"spliced", initiator.Options{}, 1 << 20, true},
		{"data digest", initiator.Options{DataDigest: true, HeaderDigest: true}, 1 << 20, false},
		{"pipe too small", initiator.Options{}, 4096, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := initiator.OpenURL(t.Context(), url, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			defer blockdev.Close(d)
			if _, err := d.WriteAt(data, 0); err != nil {
				t.Fatal(err)
			}
			pr, ok := d.(blockdev.PipeReader)
			if !ok {
				t.Fatalf("%T is not a blockdev.PipeReader", d)
			}
			pipe, err := blockdev.NewPipe(tc.pipeBytes)
			if err != nil {
				t.Fatal(err)
			}
			defer pipe.Close()
			for _, r := range []struct{ off, n int }{{0, 512}, {4096, 4096}, {1 << 20, 256 << 10}, {512, 1 << 20}, {3 << 20, 1 << 20}} {
				if tc.name == "pipe too small" && r.n < 512<<10 {
					continue // fits even a one-page pipe (slots hold large fragments)
				}
				buf := make([]byte, r.n)
				piped, err := pr.ReadAtPipe(pipe, buf, int64(r.off))
				if err != nil {
					t.Fatalf("read %d at %d: %v", r.n, r.off, err)
				}
				if piped != tc.wantPiped {
					t.Fatalf("read %d at %d: piped %v, want %v", r.n, r.off, piped, tc.wantPiped)
				}
				if piped {
					if pipe.Len() != r.n {
						t.Fatalf("pipe holds %d bytes, want %d", pipe.Len(), r.n)
					}
					clear(buf)
					if _, err := io.ReadFull(pipe, buf); err != nil {
						t.Fatal(err)
					}
				} else if pipe.Len() != 0 {
					t.Fatalf("read into memory left %d bytes in the pipe", pipe.Len())
				}
				if !bytes.Equal(buf, data[r.off:r.off+r.n]) {
					t.Fatalf("read %d at %d (piped %v): data differs", r.n, r.off, piped)
				}
			}
		})
	}
}
