// Command raidbench measures rampart RAID arrays on files against a single file of the
// same directory (tmpfs for bench/raid-bench.sh): 1 MiB sequential writes and reads and
// 4 KiB random reads, printing MiB/s, IOPS and the ratios to the single file.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
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
}

type result struct {
	name              string
	writeMBs, readMBs float64
	randIOPS          float64
}

func main() {
	o := options{}
	flag.StringVar(&o.dir, "dir", "/dev/shm", "directory for the member files (tmpfs)")
	flag.Int64Var(&o.size, "size-mib", 256, "MiB per member file and for the single file")
	flag.Int64Var(&o.chunk, "chunk-kib", 64, "chunk size in KiB")
	flag.Float64Var(&o.seconds, "seconds", 3, "seconds per random-read test")
	flag.StringVar(&o.journal, "journal", "full", "RAID-5/6 write-hole journal: full, intent or none")
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
	single, err := blockdev.OpenFile(filepath.Join(dir, "single"), blockdev.FileOptions{Create: true, Size: o.size, BlockSize: 4096})
	if err != nil {
		return err
	}
	base, err := measure("single file", single, single.Size(), o)
	single.Close()
	os.Remove(filepath.Join(dir, "single"))
	if err != nil {
		return err
	}
	fmt.Printf("%-22s write %8.0f MiB/s  read %8.0f MiB/s  4K random read %8.0f IOPS\n", base.name, base.writeMBs, base.readMBs, base.randIOPS)
	for _, l := range []struct{ level, n int }{{5, 3}, {6, 4}} {
		var ms []raid.Member
		for i := 0; i < l.n; i++ {
			p := filepath.Join(dir, fmt.Sprintf("r%d-%d", l.level, i))
			d, err := blockdev.OpenFile(p, blockdev.FileOptions{Create: true, Size: o.size, BlockSize: 4096})
			if err != nil {
				return err
			}
			ms = append(ms, raid.Member{Dev: d, Name: p})
		}
		if err := raid.Create(ms, raid.CreateOptions{Level: l.level, Chunk: o.chunk, NoJournal: o.journal == "none", IntentJournal: o.journal == "intent", AssumeClean: true}); err != nil {
			return err
		}
		a, err := raid.Assemble(ctx, ms, raid.AssembleOptions{})
		if err != nil {
			return err
		}
		// Compare like with like: the same number of bytes as the single file.
		r, err := measure(fmt.Sprintf("raid%d of %d", l.level, l.n), a, min(a.Size(), o.size), o)
		a.Close()
		if err != nil {
			return err
		}
		fmt.Printf("%-22s write %8.0f MiB/s  read %8.0f MiB/s  4K random read %8.0f IOPS\n", r.name, r.writeMBs, r.readMBs, r.randIOPS)
		fmt.Printf("%-22s ratio to single file: write %.2f  read %.2f  4K random read %.2f\n", "", r.writeMBs/base.writeMBs, r.readMBs/base.readMBs, r.randIOPS/base.randIOPS)
	}
	return nil
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
