package initiator_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/testutil"
)

// dropProxy forwards TCP to a target; drop() resets every connection (a target
// restart, a NIC reset), and while refusing it closes new connections at once.
type dropProxy struct {
	ln       net.Listener
	target   string
	refusing atomic.Bool
	mu       sync.Mutex
	conns    []net.Conn
	accepted atomic.Int64
}

func newDropProxy(t *testing.T, target string) *dropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.drop() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.refusing.Load() {
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.accepted.Add(1)
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { copyAll(u, c) }()
			go func() { copyAll(c, u) }()
		}
	}()
	return p
}

func copyAll(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *dropProxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *dropProxy) portal() string { return p.ln.Addr().String() }

func targetOf(t *testing.T, raw string) initiator.URL {
	t.Helper()
	u, err := initiator.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// connectViaProxy starts a target and a Client that reaches it through a dropProxy.
func connectViaProxy(t *testing.T, replacement time.Duration) (initiator.URL, *dropProxy, *initiator.Client, context.Context) {
	t.Helper()
	u := targetOf(t, testutil.StartTarget(t, 16<<20))
	px := newDropProxy(t, u.Portal)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	c, err := initiator.Connect(ctx, initiator.Options{Portal: px.portal(), TargetName: u.Target, ReplacementTimeout: replacement})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return u, px, c, ctx
}

// waitLoggedIn waits until c is logged in again.
func waitLoggedIn(t *testing.T, c *initiator.Client) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Session() == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClientReconnects drops the connection under a stream of writes and reads: the
// Client logs in again by itself and every command completes with the right data.
func TestClientReconnects(t *testing.T) {
	u, px, c, ctx := connectViaProxy(t, 10*time.Second)
	l, err := initiator.OpenLUN(ctx, c, u.LUN)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		want := make([]byte, 64<<10)
		got := make([]byte, len(want))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for j := range want {
				want[j] = byte(i + j)
			}
			off := int64(i%32) * int64(len(want))
			if _, err := l.WriteAt(want, off); err != nil {
				errc <- err
				return
			}
			if _, err := l.ReadAt(got, off); err != nil || !bytes.Equal(got, want) {
				errc <- errors.Join(err, errors.New("read back differs"))
				return
			}
		}
	}()
	for i := range 3 {
		time.Sleep(200 * time.Millisecond)
		px.drop()
		t.Logf("connection dropped (%d)", i+1)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	if err := <-errc; err != nil {
		t.Fatalf("I/O across dropped connections: %v, want none", err)
	}
	if n := c.Logins(); n < 2 {
		t.Errorf("logins = %d, want at least 2 (a new login after each drop)", n)
	}
	st := c.Status()
	if st.State != initiator.StateLoggedIn || st.MaxBurstLength == 0 || st.ReplacementTimeout != 10 {
		t.Errorf("status after reconnecting = %+v, want LOGGED_IN with negotiated parameters and replacement timeout 10", st)
	}
}

// TestClientReplacementTimeout: while the target cannot be reached, commands wait the
// replacement timeout and then fail with ErrSessionFailed; new commands fail at once;
// once the target is back, the Client logs in again by itself.
func TestClientReplacementTimeout(t *testing.T) {
	const rt = 600 * time.Millisecond
	u, px, c, ctx := connectViaProxy(t, rt)
	tur := []byte{0, 0, 0, 0, 0, 0}
	px.refusing.Store(true)
	px.drop()
	start := time.Now()
	_, err := c.Execute(ctx, u.LUN, tur, nil, nil)
	took := time.Since(start)
	if !errors.Is(err, initiator.ErrSessionFailed) || !strings.Contains(err.Error(), "replacement timeout") {
		t.Fatalf("command while the target is unreachable: %v, want ErrSessionFailed after the replacement timeout", err)
	}
	if took < rt/2 || took > rt+2*time.Second {
		t.Errorf("command failed after %v, want about the replacement timeout %v", took, rt)
	}
	start = time.Now()
	if _, err := c.Execute(ctx, u.LUN, tur, nil, nil); !errors.Is(err, initiator.ErrSessionFailed) || time.Since(start) > 100*time.Millisecond {
		t.Errorf("command after the timeout: %v in %v, want ErrSessionFailed at once", err, time.Since(start))
	}
	if st := c.Status(); st.State != initiator.StateFailed || st.LastError == "" {
		t.Errorf("status while unreachable = %s (%q), want FAILED with the reason", st.State, st.LastError)
	}
	px.refusing.Store(false)
	waitLoggedIn(t, c)
	if _, err := c.Execute(ctx, u.LUN, tur, nil, nil); err != nil {
		t.Fatalf("command once the target is back: %v", err)
	}
}

// TestClientFastFail: with a negative replacement timeout a dropped connection fails
// its commands at once (a multipath layer sends them elsewhere) and still reconnects.
func TestClientFastFail(t *testing.T) {
	u, px, c, ctx := connectViaProxy(t, -1)
	px.refusing.Store(true)
	px.drop()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if _, err := c.Execute(ctx, u.LUN, []byte{0, 0, 0, 0, 0, 0}, nil, nil); !errors.Is(err, initiator.ErrSessionFailed) {
		t.Fatalf("command on a dropped connection: %v, want ErrSessionFailed", err)
	} else if time.Since(start) > 200*time.Millisecond {
		t.Errorf("fast fail took %v", time.Since(start))
	}
	px.refusing.Store(false)
	waitLoggedIn(t, c)
	if c.Session() == nil || c.Logins() != 2 {
		t.Fatalf("after the target is back: session %v, logins %d, want logged in again (2 logins)", c.Session() != nil, c.Logins())
	}
}

// TestConnectRefusesBadLogin: a login the target refuses is reported, not retried.
func TestConnectRefusesBadLogin(t *testing.T) {
	u := targetOf(t, testutil.StartTarget(t, 1<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := initiator.Connect(ctx, initiator.Options{Portal: u.Portal, TargetName: "iqn.2026-11.org.rampart:no-such-target"})
	if !errors.Is(err, initiator.ErrLogin) {
		t.Fatalf("Connect to a missing target: %v, want ErrLogin", err)
	}
}

// TestDigests runs I/O with header and data digests on: what the target sends is
// checked by both the direct Data-In receive and the whole-PDU one.
func TestDigests(t *testing.T) {
	u := targetOf(t, testutil.StartTarget(t, 16<<20))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := initiator.Connect(ctx, initiator.Options{Portal: u.Portal, TargetName: u.Target, HeaderDigest: true, DataDigest: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st := c.Status(); st.HeaderDigest != "CRC32C" || st.DataDigest != "CRC32C" {
		t.Fatalf("digests negotiated %s/%s, want CRC32C/CRC32C", st.HeaderDigest, st.DataDigest)
	}
	l, err := initiator.OpenLUN(ctx, c, u.LUN)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	if _, err := l.WriteAt(want, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := l.ReadAt(got, 4096); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back with digests: %v (equal %v)", err, bytes.Equal(got, want))
	}
	// An INQUIRY answer of 37 bytes has a padded data segment.
	inq := make([]byte, 37)
	if r, err := c.Execute(ctx, u.LUN, []byte{0x12, 0, 0, 0, 37, 0}, nil, inq); err != nil || r.Status != 0 || r.DataIn != 37 {
		t.Fatalf("inquiry of 37 bytes: %+v, %v", r, err)
	}
}
