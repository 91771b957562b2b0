package raid

import (
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// crashDev is a member device for tests whose unflushed writes survive a crash only in
// part: each block of each unflushed write is kept or lost at random, as a disk with a
// volatile cache that reorders. A shared crash point freezes every crashDev of a test
// after a number of operations: later writes and flushes are silently dropped, as if
// the machine had stopped. It can also fail (every I/O errors).
type crashDev struct {
	mu      sync.Mutex
	bs      int
	data    []byte
	durable []byte
	pending []pendingWrite
	failed  bool
	clock   *crashClock
}

type pendingWrite struct {
	off  int64
	data []byte
}

// crashClock counts member operations and freezes all devices at a chosen one.
type crashClock struct {
	ops    atomic.Int64
	at     atomic.Int64 // 0: no crash planned
	frozen atomic.Bool
}

func (c *crashClock) tick() bool {
	if c == nil {
		return false
	}
	n := c.ops.Add(1)
	if at := c.at.Load(); at > 0 && n >= at {
		c.frozen.Store(true)
	}
	return c.frozen.Load()
}

var errDevFailed = errors.New("crashdev: device failed")

// jitter is the longest random delay before each crashDev write.
var jitter = func() time.Duration {
	us, _ := strconv.Atoi(os.Getenv("RAMPART_RAID_JITTER"))
	return time.Duration(us) * time.Microsecond
}()

var _ blockdev.Device = (*crashDev)(nil)

func newCrashDev(size int64, bs int, clock *crashClock) *crashDev {
	return &crashDev{bs: bs, data: make([]byte, size), durable: make([]byte, size), clock: clock}
}

func (d *crashDev) Size() int64    { return int64(len(d.data)) }
func (d *crashDev) BlockSize() int { return d.bs }

func (d *crashDev) ReadAt(p []byte, off int64) (int, error) {
	if err := blockdev.CheckRange(d, off, int64(len(p))); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failed {
		return 0, errDevFailed
	}
	return copy(p, d.data[off:]), nil
}

func (d *crashDev) WriteAt(p []byte, off int64) (int, error) {
	if err := blockdev.CheckRange(d, off, int64(len(p))); err != nil {
		return 0, err
	}
	if jitter > 0 {
		// Shakes the interleaving of the array's concurrent member writes
		// (RAMPART_RAID_JITTER=MICROSECONDS).
		time.Sleep(time.Duration(rand.Int64N(int64(jitter))))
	}
	frozen := d.clock.tick()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failed {
		return 0, errDevFailed
	}
	if frozen {
		return len(p), nil
	}
	copy(d.data[off:], p)
	d.pending = append(d.pending, pendingWrite{off, append([]byte(nil), p...)})
	return len(p), nil
}

func (d *crashDev) Flush() error {
	frozen := d.clock.tick()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failed {
		return errDevFailed
	}
	if frozen {
		return nil
	}
	copy(d.durable, d.data)
	d.pending = d.pending[:0]
	return nil
}

func (d *crashDev) fail() { d.mu.Lock(); d.failed = true; d.mu.Unlock() }

// unfail brings a failed device back with what it held when it failed, as a disk
// whose cable was pulled and plugged back.
func (d *crashDev) unfail() { d.mu.Lock(); d.failed = false; d.mu.Unlock() }

// crash keeps the durable contents plus a random subset of the unflushed blocks.
func (d *crashDev) crash(rng *rand.Rand) {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.data, d.durable)
	bs := int64(d.bs)
	for _, w := range d.pending {
		for o := int64(0); o < int64(len(w.data)); o += bs {
			if rng.IntN(2) == 0 {
				copy(d.data[w.off+o:w.off+o+bs], w.data[o:o+bs])
			}
		}
	}
	copy(d.durable, d.data)
	d.pending = d.pending[:0]
}
