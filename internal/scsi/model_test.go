package scsi

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestReadWriteModel drives random READ/WRITE/WRITE SAME/UNMAP/COMPARE AND WRITE of
// every CDB size against a plain byte slice and compares the device to it.
func TestReadWriteModel(t *testing.T) {
	const blocks = 256
	lu, _ := newTestLU(t, blocks, LUConfig{})
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	ref := make([]byte, blocks*testBS)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		nb := 1 + rng.IntN(16)
		lba := rng.IntN(blocks - nb + 1)
		off, end := lba*testBS, (lba+nb)*testBS
		switch rng.IntN(6) {
		case 0, 1:
			data := make([]byte, nb*testBS)
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			var cdb []byte
			switch rng.IntN(4) {
			case 0:
				cdb = []byte{opWrite6, byte(lba >> 16), byte(lba >> 8), byte(lba), byte(nb), 0}
			case 1:
				cdb = cdb10(opWrite10, uint32(lba), uint16(nb))
			case 2:
				cdb = make([]byte, 12)
				cdb[0] = opWrite12
				binary.BigEndian.PutUint32(cdb[2:], uint32(lba))
				binary.BigEndian.PutUint32(cdb[6:], uint32(nb))
			default:
				cdb = cdb16(opWrite16, uint64(lba), uint32(nb))
				cdb[1] = 0x08 // FUA
			}
			wantGood(t, "write", run(t, lu, n, cdb, data, 0))
			copy(ref[off:end], data)
		case 2:
			b := byte(rng.Uint32())
			wantGood(t, "write same", run(t, lu, n, cdb10(opWriteSame10, uint32(lba), uint16(nb)), fill(testBS, b), 0))
			copy(ref[off:end], fill(end-off, b))
		case 3:
			list := make([]byte, 24)
			binary.BigEndian.PutUint16(list, 22)
			binary.BigEndian.PutUint16(list[2:], 16)
			binary.BigEndian.PutUint64(list[8:], uint64(lba))
			binary.BigEndian.PutUint32(list[16:], uint32(nb))
			wantGood(t, "unmap", run(t, lu, n, []byte{opUnmap, 0, 0, 0, 0, 0, 0, 0, 24, 0}, list, 0))
			clear(ref[off:end])
		case 4:
			nb = min(nb, 4)
			end = off + nb*testBS
			c := cdb16(opCompareAndWrite, uint64(lba), 0)
			c[10], c[13] = 0, byte(nb)
			c[11], c[12] = 0, 0
			newData := fill(nb*testBS, byte(i))
			wantGood(t, "caw", run(t, lu, n, c, append(bytes.Clone(ref[off:end]), newData...), 0))
			copy(ref[off:end], newData)
		default:
			r := run(t, lu, n, cdb16(opRead16, uint64(lba), uint32(nb)), nil, uint32(nb*testBS))
			wantGood(t, "read", r)
			if !bytes.Equal(r.DataIn, ref[off:end]) {
				t.Fatalf("step %d: read %d+%d differs from the model", i, lba, nb)
			}
		}
	}
	r := run(t, lu, n, cdb10(opRead10, 0, blocks), nil, blocks*testBS)
	if !bytes.Equal(r.DataIn, ref) {
		t.Fatalf("final device contents differ from the model")
	}
}

// TestCompareAndWriteAtomic runs many initiators incrementing one counter block with
// COMPARE AND WRITE while others write elsewhere; no increment may be lost.
func TestCompareAndWriteAtomic(t *testing.T) {
	lu, dev := newTestLU(t, 64, LUConfig{})
	const workers, incs = 4, 200
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		n := testNexus("w", string(rune('a'+w)), 1)
		ready(t, lu, n)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for done := 0; done < incs; {
				cur := make([]byte, testBS)
				dev.ReadAt(cur, 0)
				next := make([]byte, testBS)
				binary.BigEndian.PutUint64(next, binary.BigEndian.Uint64(cur)+1)
				c := cdb16(opCompareAndWrite, 0, 0)
				c[13] = 1
				c[10], c[11], c[12] = 0, 0, 0
				r := run(t, lu, n, c, append(cur, next...), 0)
				switch {
				case r.Status == StatusGood:
					done++
				case len(r.Sense) > 2 && r.Sense[2] == senseMiscompare:
				default:
					t.Errorf("caw: status %#x sense %x", r.Status, r.Sense)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < incs; i++ {
				run(t, lu, n, cdb10(opWrite10, uint32(1+w), 1), fill(testBS, byte(i)), 0)
			}
		}()
	}
	wg.Wait()
	cur := make([]byte, testBS)
	dev.ReadAt(cur, 0)
	if got := binary.BigEndian.Uint64(cur); got != workers*incs {
		t.Errorf("got counter %d, want %d", got, workers*incs)
	}
}

// TestWritesDoNotSerialise checks that concurrent writes run in parallel (the CAW
// lock is taken shared by writers): 8 writes of 20 ms each must take far less than
// 160 ms.
func TestWritesDoNotSerialise(t *testing.T) {
	dev := newSlowMem(64*testBS, 20*time.Millisecond)
	lu, err := NewLogicalUnit(dev, LUConfig{Serial: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(t, lu, n, cdb10(opWrite10, uint32(i), 1), fill(testBS, 1), 0)
		}()
	}
	wg.Wait()
	d := time.Since(start)
	t.Logf("8 concurrent 20ms writes took %v", d)
	if d > 120*time.Millisecond {
		t.Errorf("got %v, want well under 160ms (that would be serialised)", d)
	}
}

func BenchmarkRead4K(b *testing.B) {
	lu, _ := newTestLU(b, 1024, LUConfig{})
	n := testNexus("a", "1", 1)
	ready(b, lu, n)
	buf := make([]byte, 4096)
	cmd := &Command{Nexus: n, CDB: cdb10(opRead10, 0, 8), ExpectedDataIn: 4096, Buf: buf}
	luns := StaticLUNs{0: lu}
	var resp Response
	b.ReportAllocs()
	b.SetBytes(4096)
	for b.Loop() {
		Dispatcher{}.Execute(b.Context(), luns, cmd, &resp)
	}
}

func BenchmarkWrite4KParallel(b *testing.B) {
	lu, _ := newTestLU(b, 1024, LUConfig{})
	n := testNexus("a", "1", 1)
	ready(b, lu, n)
	luns := StaticLUNs{0: lu}
	data := make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(4096)
	b.RunParallel(func(pb *testing.PB) {
		cmd := &Command{Nexus: n, CDB: cdb10(opWrite10, 0, 8), DataOut: data, ExpectedDataOut: 4096}
		var resp Response
		for pb.Next() {
			Dispatcher{}.Execute(b.Context(), luns, cmd, &resp)
		}
	})
}
