package target

import (
	"syscall"
	"testing"

	"github.com/rampart-storage/rampart/internal/iscsi"
)

// BenchmarkRead4K measures one 4 KiB READ(10) round trip through the target,
// allocations included (the in-test initiator allocates too).
func BenchmarkRead4K(b *testing.B) {
	s := startServer(b, testConfig("itmem:bench:16777216"))
	i := dial(b, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	b.ReportAllocs()
	b.SetBytes(4096)
	for b.Loop() {
		i.nc.SetDeadline(timeNowPlus())
		if r := i.read(8, 8); r.status != 0 {
			b.Fatalf("got status %#x", r.status)
		}
	}
}

// BenchmarkRead1M measures 1 MiB READ(10)s, one at a time, and reports the CPU time
// of the whole test process per read (target and in-test initiator), which machine
// contention disturbs less than the elapsed time.
func BenchmarkRead1M(b *testing.B) {
	s := startServer(b, testConfig("itmem:bench1m:16777216"))
	i := dial(b, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit, keys: []iscsi.KV{{Key: "MaxRecvDataSegmentLength", Value: "262144"}}})
	b.ReportAllocs()
	b.SetBytes(1 << 20)
	var p iscsi.PDU // reused: the client allocates nothing per read
	cpu0 := processCPU()
	for b.Loop() {
		i.nc.SetDeadline(timeNowPlus())
		i.send(i.cmdPDU(read10(0, 2048), true, 1<<20, nil, true))
		for {
			if err := iscsi.ReadPDU(i.br, &p, i.d, 1<<24); err != nil {
				b.Fatal(err)
			}
			if p.Opcode() == iscsi.OpSCSIResponse || p.Flags()&iscsi.FlagStatus != 0 {
				break
			}
		}
		if p.BHS[3] != 0 {
			b.Fatalf("got status %#x", p.BHS[3])
		}
		i.expStatSN = p.U32(24) + 1
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the user and system CPU time of this process, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
