package initiator_test

import (
	"context"
	"sync"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/testutil"
)

// BenchmarkRead1MiBQD8 reads 1 MiB blocks with 8 in flight through one session to
// rampart's target in this process, as fio's nbd job of bench/attach-bench.sh does
// through `rampart attach --nbd`. With -cpuprofile it shows the initiator's share.
func BenchmarkRead1MiBQD8(b *testing.B) {
	for _, direct := range []bool{true, false} {
		name := "direct"
		if !direct {
			name = "copy"
		}
		b.Run(name, func(b *testing.B) {
			initiator.SetDirectDataIn(direct)
			defer initiator.SetDirectDataIn(true)
			benchRead(b)
		})
	}
}

func benchRead(b *testing.B) {
	const size = 256 << 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := initiator.OpenURL(ctx, testutil.StartTarget(b, size), initiator.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer blockdev.Close(d)
	b.SetBytes(1 << 20)
	b.ResetTimer()
	var wg sync.WaitGroup
	var next sync.Mutex
	i := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for {
				next.Lock()
				if i >= b.N {
					next.Unlock()
					return
				}
				off := int64(i%(size>>20)) << 20
				i++
				next.Unlock()
				if _, err := d.ReadAt(buf, off); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
