package target

import (
	"testing"
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
