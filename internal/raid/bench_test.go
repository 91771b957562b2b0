package raid

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// BenchmarkFullStripeWrite writes 1 MiB requests (whole stripes) to arrays of tmpfs
// files, beside a single tmpfs file. Run with -bench FullStripe; the ratio of the
// MB/s figures is the one the issue asks about (>= 0.5).
func BenchmarkFullStripeWrite(b *testing.B) {
	dir := "/dev/shm"
	if _, err := os.Stat(dir); err != nil {
		dir = b.TempDir()
	}
	const size = 64 << 20
	open := func(b *testing.B, name string) *blockdev.File {
		p := filepath.Join(dir, fmt.Sprintf("raidbench-%d-%s", os.Getpid(), name))
		d, err := blockdev.OpenFile(p, blockdev.FileOptions{Create: true, Size: size, BlockSize: 4096})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { d.Close(); os.Remove(p) })
		return d
	}
	run := func(b *testing.B, d blockdev.Device) {
		buf := make([]byte, 1<<20)
		span := min(d.Size(), size) >> 20
		b.SetBytes(int64(len(buf)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := d.WriteAt(buf, int64(i)%span<<20); err != nil {
				b.Fatal(err)
			}
		}
		if err := d.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("single", func(b *testing.B) { run(b, open(b, "single")) })
	for _, tc := range []struct {
		level, n       int
		noJournal, cow bool
	}{{5, 3, false, false}, {5, 3, true, false}, {5, 3, false, true}, {6, 4, false, false}, {6, 4, true, false}, {6, 4, false, true}} {
		name := fmt.Sprintf("raid%d-%d", tc.level, tc.n)
		switch {
		case tc.noJournal:
			name += "-nojournal"
		case tc.cow:
			name += "-cow"
		}
		b.Run(name, func(b *testing.B) {
			var ms []Member
			for i := 0; i < tc.n; i++ {
				ms = append(ms, Member{Dev: open(b, fmt.Sprintf("%s-%d", name, i)), Name: fmt.Sprint(i)})
			}
			if err := Create(ms, CreateOptions{Level: tc.level, Chunk: 64 << 10, NoJournal: tc.noJournal, CoW: tc.cow, AssumeClean: true}); err != nil {
				b.Fatal(err)
			}
			a, err := Assemble(b.Context(), ms, AssembleOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { a.Close() })
			run(b, a)
		})
	}
}
