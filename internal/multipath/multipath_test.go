package multipath

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/testutil"
)

// cutProxy forwards TCP to a target and can "cut the cable": while cut it forwards
// nothing and closes nothing, as when a link goes down; new connections hang too.
type cutProxy struct {
	ln     net.Listener
	target string
	cut    atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *cutProxy) serve(c net.Conn) {
	for p.cut.Load() { // a cut link: the SYN "arrives" but nothing answers
		time.Sleep(50 * time.Millisecond)
	}
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, u)
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			for p.cut.Load() {
				time.Sleep(20 * time.Millisecond)
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				dst.Close()
				return
			}
		}
	}
	go pipe(u, c)
	go pipe(c, u)
}

func (p *cutProxy) url(target initiator.URL) string {
	return "iscsi://" + p.ln.Addr().String() + "/" + target.Target + "/" + itoa(target.LUN)
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// targetURL is the LUN the tests run against: RAMPART_TEST_ISCSI_URL when set (its data
// is overwritten; e.g. Debian's tgt from ../shared/peers/tgt.sh), else rampart's own
// target serving a fresh file in this process.
func targetURL(t *testing.T) initiator.URL {
	t.Helper()
	raw := os.Getenv("RAMPART_TEST_ISCSI_URL")
	if raw == "" {
		raw = testutil.StartTarget(t, 64<<20)
	}
	u, err := initiator.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestCutOnePathNoIOError cuts the active path while a verifying writer runs: no I/O
// error, a bounded stall, the path shown faulty, and ready again once restored. The
// reads go into memory, and in the "pipe" run into a pipe as NBD's do (a read cut
// half-spliced must be read again whole on the other path).
func TestCutOnePathNoIOError(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testCutOnePath(t, false) })
	t.Run("pipe", func(t *testing.T) { testCutOnePath(t, true) })
}

func testCutOnePath(t *testing.T, piped bool) {
	u := targetURL(t)
	a, b := newCutProxy(t, u.Portal), newCutProxy(t, u.Portal)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := Open(ctx, Config{
		Name: "mpatha", URLs: []string{a.url(u), b.url(u)}, Policy: Failover,
		PollingInterval: 500 * time.Millisecond, NoPathRetry: 20,
		Session: initiator.Options{NopInterval: 300 * time.Millisecond, NopTimeout: 700 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dev, err := m.Device()
	if err != nil {
		t.Fatal(err)
	}
	var ioErrs atomic.Int64
	var maxStall atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // write a block, read it back, compare: continuously
		defer close(done)
		blk := make([]byte, 64<<10)
		got := make([]byte, len(blk))
		var pipe *blockdev.Pipe
		if piped {
			var err error
			if pipe, err = blockdev.NewPipe(1 << 20); err != nil {
				t.Error(err)
				return
			}
			defer pipe.Close()
		}
		read := func(off int64) error {
			if pipe == nil {
				_, err := dev.ReadAt(got, off)
				return err
			}
			clear(got)
			inPipe, err := dev.ReadAtPipe(pipe, got, off)
			if err != nil {
				return err
			}
			if !inPipe {
				return errors.New("read did not go through the pipe")
			}
			_, err = io.ReadFull(pipe, got)
			return err
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			sum := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
			for j := range blk {
				blk[j] = sum[j%32]
			}
			off := int64(i%64) * int64(len(blk))
			start := time.Now()
			if _, err := dev.WriteAt(blk, off); err != nil {
				ioErrs.Add(1)
				t.Errorf("write during path failure: %v", err)
				return
			}
			if err := read(off); err != nil || !bytes.Equal(got, blk) {
				ioErrs.Add(1)
				t.Errorf("read back during path failure: %v (equal %v)", err, bytes.Equal(got, blk))
				return
			}
			if d := int64(time.Since(start)); d > maxStall.Load() {
				maxStall.Store(d)
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	a.cut.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for m.Status(0).Paths[0].State != PathFaulty && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := m.Status(0).Paths[0]; st.State != PathFaulty {
		t.Errorf("cut path state %q after 5 s, want faulty", st.State)
	}
	time.Sleep(time.Second)
	a.cut.Store(false)
	deadline = time.Now().Add(5 * time.Second)
	for m.Status(0).Paths[0].State != PathReady && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	<-done
	if st := m.Status(0).Paths[0]; st.State != PathReady || !st.Active {
		t.Errorf("restored path: %+v, want active ready (failback immediate)", st)
	}
	stall := time.Duration(maxStall.Load())
	t.Logf("longest I/O stall while a path was cut: %v", stall)
	if ioErrs.Load() != 0 {
		t.Errorf("%d I/O errors, want 0", ioErrs.Load())
	}
	if stall > 5*time.Second {
		t.Errorf("I/O stalled %v, want at most 5 s", stall)
	}
	var sb strings.Builder
	Print(&sb, []Status{m.Status(dev.Size())})
	t.Logf("status:\n%s", sb.String())
}

// TestAllPathsDown: shorter than the no_path_retry window, I/O waits and succeeds;
// longer, it fails with ErrNoPath and nothing hangs.
func TestAllPathsDown(t *testing.T) {
	u := targetURL(t)
	a, b := newCutProxy(t, u.Portal), newCutProxy(t, u.Portal)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := Open(ctx, Config{
		Name: "mpathb", URLs: []string{a.url(u), b.url(u)}, Policy: Multibus,
		PollingInterval: 300 * time.Millisecond, NoPathRetry: 10, // 3 s of queueing
		Session: initiator.Options{NopInterval: 200 * time.Millisecond, NopTimeout: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dev, err := m.Device()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	a.cut.Store(true)
	b.cut.Store(true)
	go func() { time.Sleep(1500 * time.Millisecond); a.cut.Store(false); b.cut.Store(false) }()
	if _, err := dev.WriteAt(buf, 0); err != nil {
		t.Fatalf("write with both paths down for 1.5 s (window 3 s): %v, want success", err)
	}
	a.cut.Store(true)
	b.cut.Store(true)
	start := time.Now()
	_, err = dev.WriteAt(buf, 0)
	if !errors.Is(err, ErrNoPath) {
		t.Fatalf("write with both paths down for good: %v, want ErrNoPath", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("failing took %v: I/O hung past the no_path_retry window", el)
	}
}
