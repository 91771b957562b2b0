package chunkserver

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSmallChunks measures what a small file costs a chunkserver: a
// chunk created by its first 4 KiB write, then deleted. "cycle" deletes each
// chunk right after writing it; "batch" writes 1000 chunks, then deletes
// them (a create_4k_files run followed by its cleanup); "unlink" turns the
// free list of deleted files off (see recycle.go). Per chunk it
// reports the wall time and the process's CPU time (user+sys, cpu-µs/chunk).
// The folders: /var/tmp (the root file system) and /dev/shm (tmpfs).
func BenchmarkSmallChunks(b *testing.B) {
	for _, root := range []string{"/var/tmp", "/dev/shm"} {
		if _, err := os.Stat(root); err != nil {
			continue
		}
		for _, run := range []struct {
			name           string
			batch, freeMax int
		}{{"cycle/unlink", 1, 0}, {"cycle/recycle", 1, freeCap}, {"batch/unlink", 1000, 0}, {"batch/recycle", 1000, freeCap}} {
			b.Run(root+"/"+run.name, func(b *testing.B) {
				batch := run.batch
				dir, err := os.MkdirTemp(root, "chunkstore-bench-")
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { os.RemoveAll(dir) })
				s, err := OpenStore([]string{dir})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				s.freeMax = run.freeMax
				data := make([]byte, 4096)
				for i := range data {
					data[i] = byte(i)
				}
				// Warm up: the chunk folders exist, as on a running server.
				for id := uint64(0); id < 256; id++ {
					if err := s.WriteAt(1<<40+id, 1, data, 0); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				cpu0, t0 := cpuTime(b), time.Now()
				id := uint64(1)
				for done := 0; done < b.N; {
					n := min(batch, b.N-done)
					for i := range n {
						if err := s.WriteAt(id+uint64(i), 1, data, 0); err != nil {
							b.Fatal(err)
						}
					}
					for i := range n {
						if err := s.Delete(id+uint64(i), 1); err != nil {
							b.Fatal(err)
						}
					}
					id += uint64(n)
					done += n
				}
				cpu, wall := cpuTime(b)-cpu0, time.Since(t0)
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/chunk")
				b.ReportMetric(float64(wall.Microseconds())/float64(b.N), "µs/chunk")
			})
		}
	}
}

// cpuTime returns the process's user+sys CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
