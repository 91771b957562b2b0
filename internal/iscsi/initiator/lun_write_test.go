package initiator

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
)

// splitCommander records WRITE(16)s into a memory disk and fails the one at failLBA.
type splitCommander struct {
	unsolicited int
	failLBA     int64
	mu          sync.Mutex
	disk        []byte
	sizes       []int
}

func (c *splitCommander) Unsolicited() int { return c.unsolicited }

func (c *splitCommander) Execute(ctx context.Context, lun uint64, cdb, out, in []byte) (Result, error) {
	lba := int64(binary.BigEndian.Uint64(cdb[2:]))
	blocks := int(binary.BigEndian.Uint32(cdb[10:]))
	if cdb[0] != 0x8a || blocks*512 != len(out) {
		return Result{}, errors.New("not a well-formed WRITE(16)")
	}
	if lba == c.failLBA {
		return Result{}, errors.New("injected failure")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	copy(c.disk[lba*512:], out)
	c.sizes = append(c.sizes, len(out))
	return Result{}, nil
}

func TestWriteSplitsToUnsolicited(t *testing.T) {
	data := make([]byte, 3<<20-4096)
	for i := range data {
		data[i] = byte(i * 7 / 512)
	}
	tests := []struct {
		name        string
		unsolicited int
		failAt      int64 // byte offset of the failing command, -1: none
		wantN       int
		wantSizes   map[int]int // command size -> count
	}{
		{"no unsolicited data: commands of maxXfer", 0, -1, len(data), map[int]int{1 << 20: 2, 1<<20 - 4096: 1}},
		{"split to 256 KiB", 256 << 10, -1, len(data), map[int]int{256 << 10: 11, 256<<10 - 4096: 1}},
		{"unaligned limit rounds down to blocks", 256<<10 + 100, -1, len(data), map[int]int{256 << 10: 11, 256<<10 - 4096: 1}},
		{"limit below minWritePiece: commands of maxXfer", 8 << 10, -1, len(data), map[int]int{1 << 20: 2, 1<<20 - 4096: 1}},
		{"limit above maxXfer is ignored", 4 << 20, -1, len(data), map[int]int{1 << 20: 2, 1<<20 - 4096: 1}},
		{"failure in the second span", 256 << 10, 1<<20 + 512<<10, 1<<20 + 512<<10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &splitCommander{unsolicited: tt.unsolicited, failLBA: -1, disk: make([]byte, 4<<20)}
			if tt.failAt >= 0 {
				c.failLBA = tt.failAt / 512
			}
			l := &LUN{ctx: context.Background(), c: c, size: 4 << 20, bs: 512, maxXfer: 1 << 20}
			n, err := l.WriteAt(data, 0)
			if n != tt.wantN || (err != nil) != (tt.failAt >= 0) {
				t.Fatalf("WriteAt: %d, %v; want %d bytes, error %v", n, err, tt.wantN, tt.failAt >= 0)
			}
			if !bytes.Equal(c.disk[:n], data[:n]) {
				t.Error("the disk does not hold the data written")
			}
			if tt.wantSizes == nil {
				return
			}
			got := map[int]int{}
			for _, s := range c.sizes {
				got[s]++
			}
			if len(got) != len(tt.wantSizes) {
				t.Fatalf("command sizes %v, want %v", got, tt.wantSizes)
			}
			for s, k := range tt.wantSizes {
				if got[s] != k {
					t.Errorf("command sizes %v, want %v", got, tt.wantSizes)
				}
			}
		})
	}
}
