// Command raidbench measures rampart RAID arrays on files against a single file of the
// same directory (tmpfs for bench/raid-bench.sh): 1 MiB sequential writes and reads and
// 4 KiB random reads, printing MiB/s, IOPS and the ratios to the single file.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/raid"
)

type options struct {
	dir     string
	size    int64 // bytes per member / of the single file
	chunk   int64
	seconds float64
	journal string
	rounds  int
	slots   int
}

type result struct {
	name              string
	writeMBs, readMBs float64
	randIOPS          float64
	// writeCPU is the CPU time (user + system, all threads) per MiB written: on a
	// shared machine it varies less than the throughput.
	writeCPU time.Duration
}

// cpuTime is the CPU time the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	o := options{}
	flag.StringVar(&o.dir, "dir", "/dev/shm", "directory for the member files (tmpfs)")
	flag.Int64Var(&o.size, "size-mib", 256, "MiB per member file and for the single file")
	flag.Int64Var(&o.chunk, "chunk-kib", 64, "chunk size in KiB")
	flag.Float64Var(&o.seconds, "seconds", 3, "seconds per random-read test")
	flag.StringVar(&o.journal, "journal", "full", "RAID-5/6 write hole: cow (full stripes copy-on-write, partial ones journaled), full (journal every stripe update) or none")
	flag.IntVar(&o.slots, "journal-slots", 0, "journal slots per member (0: rampart's default)")
	flag.IntVar(&o.rounds, "rounds", 3, "measurements of each configuration (the median is reported)")
	flag.Parse()
	o.size <<= 20
	o.chunk <<= 10
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "raidbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp(o.dir, "raidbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The machine is shared: every configuration is measured o.rounds times, the
	// configurations interleaved, each on fresh files; the median is reported.
	type config struct {
		name     string
		level, n int
	}
	configs := []config{{"single file", 0, 0}, {"raid5 of 3", 5, 3}, {"raid6 of 4", 6, 4}}
	res := make([][]result, len(configs))
	for round := 0; round < o.rounds; round++ {
		for i, c := range configs {
			var r result
			var err error
			if c.n == 0 {
				r, err = measureSingle(dir, o)
			} else {
				r, err = measureArray(ctx, dir, c.level, c.n, o)
			}
			if err != nil {
				return err
			}
			r.name = c.name
			res[i] = append(res[i], r)
		}
	}
	med := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	w := func(r result) float64 { return r.writeMBs }
	rd := func(r result) float64 { return r.readMBs }
	io := func(r result) float64 { return r.randIOPS }
	cpu := func(r result) float64 { return float64(r.writeCPU.Microseconds()) }
	fmt.Printf("median of %d rounds (writes: each round min..max)\n", o.rounds)
	base := res[0]
	for i, rs := range res {
		lo, hi := slices.MinFunc(rs, func(x, y result) int { return cmp.Compare(x.writeMBs, y.writeMBs) }), slices.MaxFunc(rs, func(x, y result) int { return cmp.Compare(x.writeMBs, y.writeMBs) })
		fmt.Printf("%-22s write %8.0f MiB/s (%.0f..%.0f, CPU %.0f us/MiB)  read %8.0f MiB/s  4K random read %8.0f IOPS\n", configs[i].name, med(rs, w), lo.writeMBs, hi.writeMBs, med(rs, cpu), med(rs, rd), med(rs, io))
		if i > 0 {
			fmt.Printf("%-22s ratio to single file: write %.2f (CPU per MiB %.1fx)  read %.2f  4K random read %.2f\n", "", med(rs, w)/med(base, w), med(rs, cpu)/med(base, cpu), med(rs, rd)/med(base, rd), med(rs, io)/med(base, io))
			// The single file and the array of one round ran a few seconds
			// apart: their ratio drifts less with the machine's load.
			per := make([]float64, len(rs))
			for j := range rs {
				per[j] = rs[j].writeMBs / base[j].writeMBs
			}
			slices.Sort(per)
			fmt.Printf("%-22s write ratio of each round to the single file of the same round: median %.2f (%.2f..%.2f)\n", "", per[len(per)/2], per[0], per[len(per)-1])
		}
	}
	return nil
}

func measureSingle(dir string, o options) (result, error) {
	p := filepath.Join(dir, "single")
	defer os.Remove(p)
	single, err := blockdev.OpenFile(p, blockdev.FileOptions{Create: true, Size: o.size, BlockSize: 4096})
	if err != nil {
		return result{}, err
	}
	defer single.Close()
	return measure("single file", single, single.Size(), o)
}

func measureArray(ctx context.Context, dir string, level, n int, o options) (result, error) {
	var ms []raid.Member
	defer func() {
		for _, m := range ms {
			os.Remove(m.Name)
		}
	}()
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("r%d-%d", level, i))
		d, err := blockdev.OpenFile(p, blockdev.FileOptions{Create: true, Size: o.size, BlockSize: 4096})
		if err != nil {
			raid.CloseMembers(ms)
			return result{}, err
		}
		ms = append(ms, raid.Member{Dev: d, Name: p})
	}
	if err := raid.Create(ms, raid.CreateOptions{Level: level, Chunk: o.chunk, NoJournal: o.journal == "none", CoW: o.journal == "cow", AssumeClean: true, JournalSlots: o.slots}); err != nil {
		raid.CloseMembers(ms)
		return result{}, err
	}
	a, err := raid.Assemble(ctx, ms, raid.AssembleOptions{})
	if err != nil {
		raid.CloseMembers(ms)
		return result{}, err
	}
	defer a.Close()
	// Compare like with like: the same number of bytes as the single file.
	return measure(fmt.Sprintf("raid%d of %d", level, n), a, min(a.Size(), o.size), o)
}

// measure writes span bytes sequentially in 1 MiB requests (then flushes), reads them
// back, and does 4 KiB random reads for o.seconds.
func measure(name string, d blockdev.Device, span int64, o options) (result, error) {
	const mib = 1 << 20
	span = span / mib * mib
	buf := make([]byte, mib)
	for i := range buf {
		buf[i] = byte(i * 31)
	}
	r := result{name: name}
	c0 := cpuTime()
	t0 := time.Now()
	for off := int64(0); off < span; off += mib {
		if _, err := d.WriteAt(buf, off); err != nil {
			return r, fmt.Errorf("%s: write: %w", name, err)
		}
	}
	if err := d.Flush(); err != nil {
		return r, fmt.Errorf("%s: flush: %w", name, err)
	}
	r.writeMBs = float64(span) / mib / time.Since(t0).Seconds()
	r.writeCPU = (cpuTime() - c0) / time.Duration(span/mib)
	t0 = time.Now()
	for off := int64(0); off < span; off += mib {
		if _, err := d.ReadAt(buf, off); err != nil {
			return r, fmt.Errorf("%s: read: %w", name, err)
		}
	}
	r.readMBs = float64(span) / mib / time.Since(t0).Seconds()
	rng := rand.New(rand.NewPCG(1, 2))
	small := buf[:4096]
	n := 0
	t0 = time.Now()
	deadline := t0.Add(time.Duration(o.seconds * float64(time.Second)))
	for time.Now().Before(deadline) {
		for i := 0; i < 256; i++ {
			if _, err := d.ReadAt(small, rng.Int64N(span/4096)*4096); err != nil {
				return r, fmt.Errorf("%s: random read: %w", name, err)
			}
			n++
		}
	}
	r.randIOPS = float64(n) / time.Since(t0).Seconds()
	return r, nil
}
