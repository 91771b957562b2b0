package raid

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// The model-based test: random writes, reads and flushes against a reference model,
// random member failures within the level's tolerance, rebuilds onto new members, and
// crashes at random points that keep only flushed data plus a random subset of the
// rest. After each crash the array is reassembled and every block must read as its
// value at the last flush or as one of the values written since; without a crash every
// read must match exactly. Replay a failure with RAMPART_RAID_SEED=<seed>.

const (
	mBS    = 512
	mChunk = 4096
)

// tagBlock fills b (one block) with the pattern of write tag at array block blk.
func tagBlock(b []byte, tag uint64, blk int64) {
	if tag == 0 {
		clear(b)
		return
	}
	binary.LittleEndian.PutUint64(b, tag)
	binary.LittleEndian.PutUint64(b[8:], uint64(blk))
	x := tag*0x9E3779B97F4A7C15 ^ uint64(blk)
	for i := 16; i < len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
}

// blockTag decodes the tag of a block, or returns ok=false if b is no tag's pattern.
func blockTag(b []byte, blk int64) (uint64, bool) {
	tag := binary.LittleEndian.Uint64(b)
	want := make([]byte, len(b))
	tagBlock(want, tag, blk)
	return tag, string(want) == string(b)
}

type model struct {
	cur     []uint64          // value a read must return now
	flushed []uint64          // value at the last completed flush
	since   []map[uint64]bool // values written since the last flush
}

func newModel(blocks int64) *model {
	m := &model{cur: make([]uint64, blocks), flushed: make([]uint64, blocks), since: make([]map[uint64]bool, blocks)}
	return m
}

func (m *model) write(blk int64, tag uint64) {
	m.cur[blk] = tag
	if m.since[blk] == nil {
		m.since[blk] = map[uint64]bool{}
	}
	m.since[blk][tag] = true
}

func (m *model) flush() {
	copy(m.flushed, m.cur)
	clear(m.since)
}

// modelSeeds picks the seeds of a run: RAMPART_RAID_SEED=N replays seed N only,
// RAMPART_RAID_SEED=random explores one new seed; by default the fixed seeds (so that
// go test and CI repeat what passed before) plus RAMPART_RAID_RANDOM_SEEDS (default
// 2) fresh random ones, each printed so that a failure can be replayed.
func modelSeeds(t *testing.T, fixed ...uint64) []uint64 {
	t.Helper()
	random := func() uint64 { return rand.Uint64() }
	switch s := os.Getenv("RAMPART_RAID_SEED"); s {
	case "":
		n := 2
		if v := os.Getenv("RAMPART_RAID_RANDOM_SEEDS"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 0 {
				t.Fatalf("RAMPART_RAID_RANDOM_SEEDS=%q: want a count", v)
			}
		}
		seeds := append([]uint64(nil), fixed...)
		for i := 0; i < n; i++ {
			seeds = append(seeds, random())
		}
		return seeds
	case "random":
		return []uint64{random()}
	default:
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RAMPART_RAID_SEED=%q: want a number or random: %v", s, err)
		}
		return []uint64{v}
	}
}

func TestModel(t *testing.T) {
	for _, tc := range []struct {
		level, n int
		cow      bool
	}{
		{0, 3, false}, {1, 2, false}, {1, 3, false}, {10, 4, false}, {5, 3, false}, {5, 4, false}, {6, 4, false}, {6, 5, false},
		{5, 3, true}, {5, 4, true}, {6, 4, true}, {6, 5, true},
	} {
		t.Run(modelName(tc.level, tc.n, tc.cow), func(t *testing.T) {
			fixed := []uint64{1}
			if tc.level == 5 && tc.n == 3 && !tc.cow {
				// Found the replay of old journal entries after a member was
				// replaced (TestJournalReplayAfterMemberReplaced); the code has
				// changed since, so it no longer replays that run, but it stays.
				fixed = append(fixed, 1795357577379492831)
			}
			for _, seed := range modelSeeds(t, fixed...) {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					t.Logf("seed %d (replay with RAMPART_RAID_SEED=%d go test -run 'TestModel/%s/' ./internal/raid)", seed, seed, modelName(tc.level, tc.n, tc.cow))
					ops := 1500
					if testing.Short() {
						ops = 300
					}
					runModel(t, tc.level, tc.n, tc.cow, seed, ops)
				})
			}
		})
	}
}

type modelRun struct {
	t       *testing.T
	rng     *rand.Rand
	level   int
	clock   *crashClock
	devs    []*crashDev // by position; failed ones stay until replaced
	names   []string
	a       *Array
	m       *model
	blocks  int64
	tag     uint64
	failed  map[int]bool
	nextDev int
}

const memberSize = 140*1024 + 64*mChunk

// modelBitmapChunk makes the write-intent bitmap of model arrays fine enough to have
// clean and dirty regions (32 of them per member).
const modelBitmapChunk = 2 * mChunk

// modelName names a model test case: raid5-3, or raid5-3-cow for copy-on-write stripes.
func modelName(level, n int, cow bool) string {
	if cow {
		return fmt.Sprintf("raid%d-%d-cow", level, n)
	}
	return fmt.Sprintf("raid%d-%d", level, n)
}

func runModel(t *testing.T, level, n int, cow bool, seed uint64, ops int) {
	r := &modelRun{t: t, rng: rand.New(rand.NewPCG(seed, seed^0xabcdef)), level: level, clock: &crashClock{}, failed: map[int]bool{}}
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
	tol := map[int]int{0: 0, 1: n - 1, 10: 1, 5: 1, 6: 2}[level]
	crashes, fails, rebuilds := 0, 0, 0
	for op := 0; op < ops; op++ {
		switch x := r.rng.IntN(100); {
		case x < 45:
			r.write()
		case x < 75:
			r.read()
		case x < 85:
			r.flush()
		case x < 90 && len(r.failed) < tol:
			r.failOne()
			fails++
		case x < 94 && len(r.failed) > 0:
			if r.rng.IntN(2) == 0 {
				r.replaceOne()
			} else {
				r.reAddOne()
			}
			rebuilds++
		case x < 97:
			r.clock.at.Store(r.clock.ops.Load() + 1 + r.rng.Int64N(40))
		}
		if r.clock.frozen.Load() {
			r.crash()
			crashes++
		}
	}
	r.clock.at.Store(0)
	r.verifyAll(false)
	t.Logf("%d ops: %d crashes, %d member failures, %d rebuilds", ops, crashes, fails, rebuilds)
	if err := r.a.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func (r *modelRun) assemble() {
	r.t.Helper()
	ms := make([]Member, len(r.devs))
	for i, d := range r.devs {
		if r.failed[i] {
			continue
		}
		if _, err := ReadSuperblock(d); err != nil {
			// A crash during AddMember (or a torn superblock write) leaves a
			// member without a valid superblock: it is missing and gets replaced.
			r.t.Logf("member %s: %v: assembling without it", r.names[i], err)
			r.failed[i] = true
			continue
		}
		ms[i] = Member{Dev: d, Name: r.names[i]}
	}
	// Rebuilds at full speed: throttling is not what this test checks.
	a, err := Assemble(r.t.Context(), ms, AssembleOptions{MinSpeed: 1 << 40})
	if err != nil {
		r.t.Fatalf("assemble: %v", err)
	}
	if err := a.WaitRebuild(r.t.Context()); err != nil {
		r.t.Fatalf("rebuild after assembly: %v", err)
	}
	r.a = a
}

func (r *modelRun) write() {
	maxBlocks := int64(3 * r.a.g.stripeWidth() / mBS)
	if r.rng.IntN(4) == 0 {
		// Aligned full stripes, the fast path.
		sw := r.a.g.stripeWidth() / mBS
		start := r.rng.Int64N(r.blocks/sw) * sw
		r.writeRange(start, min(sw*(1+r.rng.Int64N(2)), r.blocks-start))
		return
	}
	start := r.rng.Int64N(r.blocks)
	r.writeRange(start, 1+r.rng.Int64N(min(maxBlocks, r.blocks-start)))
}

func (r *modelRun) writeRange(start, n int64) {
	buf := make([]byte, n*mBS)
	for i := int64(0); i < n; i++ {
		r.tag++
		tagBlock(buf[i*mBS:(i+1)*mBS], r.tag, start+i)
		r.m.write(start+i, r.tag)
	}
	if _, err := r.a.WriteAt(buf, start*mBS); err != nil && !r.clock.frozen.Load() {
		r.t.Fatalf("write %d+%d blocks: %v", start, n, err)
	}
}

func (r *modelRun) read() {
	start := r.rng.Int64N(r.blocks)
	n := 1 + r.rng.Int64N(min(int64(3*r.a.g.stripeWidth()/mBS), r.blocks-start))
	buf := make([]byte, n*mBS)
	if _, err := r.a.ReadAt(buf, start*mBS); err != nil {
		r.t.Fatalf("read %d+%d blocks: %v", start, n, err)
	}
	if r.clock.frozen.Load() {
		return
	}
	for i := int64(0); i < n; i++ {
		tag, ok := blockTag(buf[i*mBS:(i+1)*mBS], start+i)
		if !ok || tag != r.m.cur[start+i] {
			r.t.Fatalf("read block %d: got tag %d (pattern ok %v), want %d", start+i, tag, ok, r.m.cur[start+i])
		}
	}
}

func (r *modelRun) flush() {
	if err := r.a.Flush(); err != nil && !r.clock.frozen.Load() {
		r.t.Fatalf("flush: %v", err)
	}
	if !r.clock.frozen.Load() {
		r.m.flush()
	}
}

func (r *modelRun) failOne() {
	var live []int
	for i := range r.devs {
		if !r.failed[i] {
			live = append(live, i)
		}
	}
	i := live[r.rng.IntN(len(live))]
	if r.level == 10 {
		// Keep one copy of each pair.
		if r.failed[i^1] {
			return
		}
	}
	r.failed[i] = true
	r.devs[i].fail()
	r.t.Logf("op: fail member %s", r.names[i])
}

func (r *modelRun) replaceOne() {
	for i := range r.devs {
		if !r.failed[i] {
			continue
		}
		// Let the array notice the failure if no I/O touched the member yet.
		_ = r.a.FailMember(r.names[i], true)
		if err := r.a.RemoveMember(r.names[i], false); err != nil && !errors.Is(err, ErrNotMember) && !r.clock.frozen.Load() {
			r.t.Fatalf("remove %s: %v", r.names[i], err)
		}
		d := newCrashDev(r.devs[i].Size(), mBS, r.clock)
		name := fmt.Sprintf("m%d", r.nextDev)
		r.nextDev++
		if err := r.a.AddMember(d, name); err != nil {
			r.t.Fatalf("add %s: %v", name, err)
		}
		if err := r.a.WaitRebuild(r.t.Context()); err != nil && !r.clock.frozen.Load() {
			r.t.Fatalf("rebuild %s: %v", name, err)
		}
		r.t.Logf("op: replaced %s by %s", r.names[i], name)
		r.devs[i], r.names[i] = d, name
		delete(r.failed, i)
		return
	}
}

// reAddOne brings a failed member back (with what it held when it failed) and adds
// it again: the write-intent bitmap rebuilds only what it missed.
func (r *modelRun) reAddOne() {
	for i := range r.devs {
		if !r.failed[i] {
			continue
		}
		_ = r.a.FailMember(r.names[i], true)
		if r.rng.IntN(2) == 0 {
			if err := r.a.RemoveMember(r.names[i], false); err != nil && !errors.Is(err, ErrNotMember) && !r.clock.frozen.Load() {
				r.t.Fatalf("remove %s: %v", r.names[i], err)
			}
		}
		r.devs[i].unfail()
		if err := r.a.AddMember(r.devs[i], r.names[i]); err != nil && !r.clock.frozen.Load() {
			r.t.Fatalf("re-add %s: %v", r.names[i], err)
		}
		if err := r.a.WaitRebuild(r.t.Context()); err != nil && !r.clock.frozen.Load() {
			r.t.Fatalf("rebuild %s: %v", r.names[i], err)
		}
		if r.clock.frozen.Load() {
			// Crashed meanwhile: whether it made it back is for the assembly
			// after the crash to find out; the test leaves it out.
			return
		}
		r.t.Logf("op: re-added %s", r.names[i])
		delete(r.failed, i)
		return
	}
}

// crash stops the array where the crash point froze it, drops the unflushed writes at
// random, reassembles and checks every block.
func (r *modelRun) crash() {
	r.t.Helper()
	r.t.Logf("op: crash (failed %v)", r.failed)
	_ = r.a.Close()
	for _, d := range r.devs {
		d.crash(r.rng)
	}
	r.clock.at.Store(0)
	r.clock.frozen.Store(false)
	r.assemble()
	r.verifyAll(true)
}

// verifyAll reads every block. After a crash a block may hold its flushed value or any
// value written since; the model then adopts what is there.
func (r *modelRun) verifyAll(afterCrash bool) {
	r.t.Helper()
	buf := make([]byte, r.a.Size())
	if _, err := r.a.ReadAt(buf, 0); err != nil {
		r.t.Fatalf("read all: %v", err)
	}
	for b := int64(0); b < r.blocks; b++ {
		tag, ok := blockTag(buf[b*mBS:(b+1)*mBS], b)
		if !ok {
			r.t.Fatalf("block %d holds data that was never written (crash %v): tag %d, flushed %d, since %v, first bytes %x", b, afterCrash, tag, r.m.flushed[b], r.m.since[b], buf[b*mBS:b*mBS+32])
		}
		if !afterCrash {
			if tag != r.m.cur[b] {
				r.t.Fatalf("block %d: got tag %d, want %d", b, tag, r.m.cur[b])
			}
			continue
		}
		if tag != r.m.flushed[b] && !r.m.since[b][tag] {
			r.t.Fatalf("block %d after crash: got tag %d, want the flushed %d or one written since %v", b, tag, r.m.flushed[b], r.m.since[b])
		}
		r.m.cur[b] = tag
	}
	if afterCrash {
		copy(r.m.flushed, r.m.cur)
		clear(r.m.since)
	}
	// Reading twice must give the same answer (mirrors resynced, parity consistent).
	buf2 := make([]byte, r.a.Size())
	if _, err := r.a.ReadAt(buf2, 0); err != nil {
		r.t.Fatalf("read all: %v", err)
	}
	if string(buf) != string(buf2) {
		r.t.Fatalf("two reads of the whole array differ")
	}
	// Mirrors agree and parity matches the data (rows with a member missing are
	// skipped).
	if res, err := r.a.Check(r.t.Context(), false); err != nil || res.Mismatches != 0 {
		r.t.Fatalf("check after verify (crash %v): %d mismatches, err %v", afterCrash, res.Mismatches, err)
	}
}
