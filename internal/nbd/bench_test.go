package nbd

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// benchTransfer keeps depth requests of size bytes in flight on one connection, as
// fio's nbd engine does, and measures the server's cost per request.
func benchTransfer(b *testing.B, typ uint16, size, depth int) {
	const devSize = 64 << 20
	s := startServer(b, Export{Name: "b", Device: blockdev.NewMem(devSize, 512)})
	c := dialConn(b, s, "b")
	br := bufio.NewReaderSize(c, 1<<20)
	payload := make([]byte, size)
	wbuf := make([]byte, 0, requestSize+size)
	req := func(i int) []byte {
		h := binary.BigEndian.AppendUint32(wbuf[:0], magicReq)
		h = binary.BigEndian.AppendUint16(h, 0)
		h = binary.BigEndian.AppendUint16(h, typ)
		h = binary.BigEndian.AppendUint64(h, uint64(i))
		h = binary.BigEndian.AppendUint64(h, uint64(i*size)%devSize)
		h = binary.BigEndian.AppendUint32(h, uint32(size))
		if typ == cmdWrite {
			h = append(h, payload...)
		}
		return h
	}
	credits := make(chan struct{}, depth)
	done := make(chan error, 1)
	go func() {
		var rh [16]byte
		buf := make([]byte, size)
		for i := 0; i < b.N; i++ {
			if _, err := io.ReadFull(br, rh[:]); err != nil {
				done <- err
				return
			}
			if e := binary.BigEndian.Uint32(rh[4:]); e != 0 {
				b.Errorf("reply error %d", e)
			}
			if typ == cmdRead {
				if _, err := io.ReadFull(br, buf); err != nil {
					done <- err
					return
				}
			}
			<-credits
		}
		done <- nil
	}()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		credits <- struct{}{}
		if _, err := c.Write(req(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the user and system CPU time of this process (server and client), in
// nanoseconds: contention on a shared machine disturbs it less than elapsed time.
func processCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// dialConn opens a transmission-phase connection to export.
func dialConn(t testing.TB, s *Server, export string) net.Conn {
	t.Helper()
	c, err := net.Dial(s.Addr().Network(), s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var hello [18]byte
	if _, err := io.ReadFull(c, hello[:]); err != nil {
		t.Fatal(err)
	}
	binary.Write(c, binary.BigEndian, uint32(flagFixedNewstyle|flagNoZeroes))
	sendOpt(c, optExportName, []byte(export))
	var info [10]byte
	if _, err := io.ReadFull(c, info[:]); err != nil {
		t.Fatalf("export %q: %v", export, err)
	}
	return c
}

func BenchmarkRead1M(b *testing.B)   { benchTransfer(b, cmdRead, 1<<20, 8) }
func BenchmarkRead128K(b *testing.B) { benchTransfer(b, cmdRead, 128<<10, 32) }
func BenchmarkWrite1M(b *testing.B)  { benchTransfer(b, cmdWrite, 1<<20, 8) }
