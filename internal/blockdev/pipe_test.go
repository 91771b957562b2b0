package blockdev

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); ch <- c }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-ch
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func rawConn(t *testing.T, c syscall.Conn) syscall.RawConn {
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// TestPipeRelay moves data socket -> pipe -> socket, with a prefix written from memory
// (as a reader does with bytes it had buffered), and checks every byte arrives in order.
func TestPipeRelay(t *testing.T) {
	in, src := tcpPair(t)  // the test writes into in; the pipe reads from src
	dst, out := tcpPair(t) // the pipe writes into dst; the test reads out
	p, err := NewPipe(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Cap() < 1<<20 {
		t.Fatalf("Cap %d, asked for 1 MiB", p.Cap())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{4096, 65536 + 512, 256 << 10, 512 << 10} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		go func() { in.Write(data[100:]) }()
		if _, err := p.Write(data[:100]); err != nil {
			t.Fatal(err)
		}
		if err := p.ReadFrom(rawConn(t, src), n-100); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if p.Len() != n {
			t.Fatalf("Len %d after %d bytes", p.Len(), n)
		}
		got := make([]byte, n)
		errc := make(chan error, 1)
		go func() { _, err := io.ReadFull(out, got); errc <- err }()
		if err := p.WriteTo(rawConn(t, dst)); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) || p.Len() != 0 {
			t.Fatalf("%d bytes: relayed data differs (Len %d)", n, p.Len())
		}
	}
}

// TestPipeFullAndReset: a pipe too small for the data reports ErrPipeFull instead of
// waiting forever, keeps what it took, and Reset empties it. (A slot of the pipe may
// hold a large page fragment, so it can take more than Cap bytes of a socket's data.)
func TestPipeFullAndReset(t *testing.T) {
	in, src := tcpPair(t)
	p, err := NewPipe(64 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	data := make([]byte, 1<<20)
	go func() { in.Write(data) }()
	err = p.ReadFrom(rawConn(t, src), len(data))
	if !errors.Is(err, ErrPipeFull) {
		t.Fatalf("ReadFrom of 1 MiB into a 64 KiB pipe: %v, want ErrPipeFull", err)
	}
	if p.Len() == 0 || p.Len() >= len(data) {
		t.Fatalf("Len %d after filling a pipe of %d", p.Len(), p.Cap())
	}
	if err := p.Reset(); err != nil || p.Len() != 0 {
		t.Fatalf("Reset: %v, Len %d", err, p.Len())
	}
	if _, err := p.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := p.Reset(); err != nil {
		t.Fatal(err)
	}
}

// TestPipeClosedPeer: the socket closing before n bytes is an error, not a hang.
func TestPipeClosedPeer(t *testing.T) {
	in, src := tcpPair(t)
	p, err := NewPipe(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	in.Write(make([]byte, 1000))
	in.Close()
	if err := p.ReadFrom(rawConn(t, src), 5000); err == nil {
		t.Fatal("ReadFrom past the peer's close succeeded")
	}
	if err := p.Reset(); err != nil {
		t.Fatal(err)
	}
}
