package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// pipeDev is a memory device that serves reads through the pipe for offsets in the
// first half, through memory for the second half, and fails reads of block 7.
type pipeDev struct {
	*blockdev.Mem
	piped *atomic.Int64 // reads answered through the pipe
}

func (d pipeDev) ReadAtPipe(pipe *blockdev.Pipe, p []byte, off int64) (bool, error) {
	if off <= 7*512 && off+int64(len(p)) > 7*512 {
		return false, errors.New("medium error")
	}
	if _, err := d.ReadAt(p, off); err != nil {
		return false, err
	}
	if off >= d.Size()/2 {
		return false, nil
	}
	_, err := pipe.Write(p)
	d.piped.Add(1)
	return err == nil, err
}

// TestPipedReads: replies spliced from a pipe and replies from memory, many in flight
// on one connection, each arrive whole and in one piece; a failed piped read gives an
// error reply and the connection goes on.
func TestPipedReads(t *testing.T) {
	dev := pipeDev{blockdev.NewMem(8<<20, 512), new(atomic.Int64)}
	data := make([]byte, dev.Size())
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	dev.WriteAt(data, 0)
	s := startServer(t, Export{Name: "disk", Device: dev})
	c := dial(t, s, "disk")
	type req struct{ off, n int }
	var reqs []req
	for i := range 64 {
		n := []int{4096, 64 << 10, 1 << 20, 2 << 20}[i%4] // 2 MiB: too big for a pipe
		off := rng.IntN(int(dev.Size())-n) &^ 511
		if off <= 7*512 {
			off = 8 * 512
		}
		reqs = append(reqs, req{off, n})
	}
	for h, r := range reqs {
		c.send(cmdRead, 0, uint64(h), uint64(r.off), uint32(r.n), nil)
	}
	for range reqs {
		var hdr [16]byte
		if _, err := io.ReadFull(c.c, hdr[:]); err != nil {
			t.Fatal(err)
		}
		h, e := binary.BigEndian.Uint64(hdr[8:]), binary.BigEndian.Uint32(hdr[4:])
		if h >= uint64(len(reqs)) || e != 0 {
			t.Fatalf("reply handle %d errno %d", h, e)
		}
		r := reqs[h]
		got := make([]byte, r.n)
		if _, err := io.ReadFull(c.c, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[r.off:r.off+r.n]) {
			t.Fatalf("read %d at %d: data differs", r.n, r.off)
		}
	}
	if dev.piped.Load() == 0 {
		t.Fatal("no read went through the pipe")
	}
	c.send(cmdRead, 0, 99, 0, 8*512, nil)
	if h, e, _ := c.recv(0); h != 99 || e != errIO {
		t.Fatalf("failed piped read: handle %d errno %d, want EIO", h, e)
	}
	c.send(cmdRead, 0, 100, 8*512, 4096, nil)
	if _, e, got := c.recv(4096); e != 0 || !bytes.Equal(got, data[8*512:8*512+4096]) {
		t.Fatalf("read after a failed one: errno %d", e)
	}
}
