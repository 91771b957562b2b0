package raid

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestModelConcurrent is the model test with several writers at once, as a target
// with a queue depth above one drives an array: journal entries of different
// requests in flight together, batches of several stripes, stripe locks contended.
// Each round, writers issue random (often overlapping) writes while a crash point
// may freeze the members; after the round the array is either crashed and
// reassembled, or flushed, and every block must hold its flushed value or a value
// written since, never anything else. Members fail (unnoticed) and are replaced
// between rounds.
func TestModelConcurrent(t *testing.T) {
	for _, tc := range []struct {
		level, n int
		cow      bool
	}{{1, 2, false}, {10, 4, false}, {5, 3, false}, {5, 4, false}, {6, 4, false}, {6, 5, false}, {5, 3, true}, {6, 4, true}, {6, 5, true}} {
		t.Run(modelName(tc.level, tc.n, tc.cow), func(t *testing.T) {
			for _, seed := range modelSeeds(t, 1) {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					t.Logf("seed %d (replay with RAMPART_RAID_SEED=%d go test -run 'TestModelConcurrent/%s/' ./internal/raid; goroutine scheduling varies)", seed, seed, modelName(tc.level, tc.n, tc.cow))
					rounds := 120
					if testing.Short() {
						rounds = 30
					}
					runConcurrentModel(t, tc.level, tc.n, tc.cow, seed, rounds)
				})
			}
		})
	}
}

func runConcurrentModel(t *testing.T, level, n int, cow bool, seed uint64, rounds int) {
	r := &modelRun{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), level: level, clock: &crashClock{}, failed: map[int]bool{}}
	ms := make([]Member, n)
	for i := range ms {
		r.devs = append(r.devs, newCrashDev(memberSize, mBS, r.clock))
		r.names = append(r.names, fmt.Sprintf("m%d", i))
		ms[i] = Member{Dev: r.devs[i], Name: r.names[i]}
	}
	r.nextDev = n
	if err := Create(ms, CreateOptions{Level: level, Chunk: mChunk, Name: "model", JournalSlots: 16, BitmapChunk: modelBitmapChunk, CoW: cow}); err != nil {
		t.Fatalf("create: %v", err)
	}
	r.assemble()
	r.blocks = r.a.Size() / mBS
	r.m = newModel(r.blocks)
	tol := map[int]int{1: n - 1, 10: 1, 5: 1, 6: 2}[level]
	crashes := 0
	for round := 0; round < rounds; round++ {
		switch x := r.rng.IntN(10); {
		case x < 1 && len(r.failed) < tol:
			r.failOne()
		case x < 2 && len(r.failed) > 0:
			if r.rng.IntN(2) == 0 {
				r.replaceOne()
			} else {
				r.reAddOne()
			}
			if r.clock.frozen.Load() {
				r.crash()
				crashes++
			}
		}
		if r.rng.IntN(3) == 0 {
			r.clock.at.Store(r.clock.ops.Load() + 1 + r.rng.Int64N(200))
		}
		r.concurrentWrites(2+r.rng.IntN(4), 1+r.rng.IntN(8))
		r.clock.at.Store(0)
		if r.clock.frozen.Load() {
			r.crash()
			crashes++
			continue
		}
		if err := r.a.Flush(); err != nil {
			t.Fatalf("flush: %v", err)
		}
		// Overlapping writes in flight together may land in either order: any value
		// written this round is right; the model adopts what is there.
		r.verifyAll(true)
	}
	t.Logf("%d rounds: %d crashes", rounds, crashes)
	if err := r.a.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// concurrentWrites runs writers goroutines of k random writes each and waits for
// them. The model records each write before it is issued.
func (r *modelRun) concurrentWrites(writers, k int) {
	var mu sync.Mutex // guards r.m, r.tag, r.rng
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < k; i++ {
				mu.Lock()
				sw := r.a.g.stripeWidth() / mBS
				var start, n int64
				if r.rng.IntN(3) == 0 {
					start = r.rng.Int64N(r.blocks/sw) * sw
					n = min(sw*(1+r.rng.Int64N(4)), r.blocks-start)
				} else {
					start = r.rng.Int64N(r.blocks)
					n = 1 + r.rng.Int64N(min(3*sw, r.blocks-start))
				}
				buf := make([]byte, n*mBS)
				for b := int64(0); b < n; b++ {
					r.tag++
					tagBlock(buf[b*mBS:(b+1)*mBS], r.tag, start+b)
					r.m.write(start+b, r.tag)
				}
				mu.Unlock()
				if _, err := r.a.WriteAt(buf, start*mBS); err != nil && !r.clock.frozen.Load() {
					errs <- fmt.Errorf("write %d+%d blocks: %w", start, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		r.t.Fatal(err)
	}
}
