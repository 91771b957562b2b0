package multipath

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
)

// TestLogoutPortal: logging out one portal takes its path out of the map while a
// verifying writer runs, with no I/O error; the map's status lists the other path
// only (keeping its index), the session through the portal is logged out (FREE), and
// logging out the last portal is refused with ErrLastPath. Logging in through the
// portal again brings the path back with a new session.
func TestLogoutPortal(t *testing.T) {
	u := targetURL(t)
	a, b := newCutProxy(t, u.Portal), newCutProxy(t, u.Portal)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := Open(ctx, Config{
		Name: "mpathl", URLs: []string{a.url(u), b.url(u)}, Policy: Multibus, Selector: RoundRobin,
		PollingInterval: 500 * time.Millisecond, NoPathRetry: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dev, err := m.Device()
	if err != nil {
		t.Fatal(err)
	}
	bPortal := m.Status(0).Paths[1].Session.Portal
	bClient := m.paths[1].c

	var ioErr atomic.Value
	var rounds atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		blk, got := make([]byte, 64<<10), make([]byte, 64<<10)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for j := range blk {
				blk[j] = byte(i + j/512)
			}
			off := int64(i%32) * int64(len(blk))
			if _, err := dev.WriteAt(blk, off); err != nil {
				ioErr.Store(err)
				return
			}
			if _, err := dev.ReadAt(got, off); err != nil || !bytes.Equal(got, blk) {
				ioErr.Store(errors.Join(err, errors.New("read back differs")))
				return
			}
			rounds.Add(1)
		}
	}()
	for rounds.Load() < 20 {
		time.Sleep(10 * time.Millisecond)
	}
	n, err := m.LogoutPortal(ctx, u.Target, bPortal)
	if n != 1 || err != nil {
		t.Fatalf("LogoutPortal(%s): %d, %v; want 1 path logged out", bPortal, n, err)
	}
	before := rounds.Load()
	for rounds.Load() < before+20 {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	<-done
	if err, _ := ioErr.Load().(error); err != nil {
		t.Fatalf("I/O while a portal was logged out: %v", err)
	}
	if st := bClient.Status(); st.State != initiator.StateFree {
		t.Errorf("session through the logged-out portal: %s, want %s (logged out)", st.State, initiator.StateFree)
	}
	st := m.Status(dev.Size())
	var sb strings.Builder
	Print(&sb, []Status{st})
	t.Logf("after logout of %s:\n%s", bPortal, sb.String())
	if len(st.Paths) != 1 || st.Paths[0].Index != 0 || st.Configured != 2 || !st.Paths[0].Active ||
		len(st.Groups) != 1 || len(st.Groups[0].Paths) != 1 || st.Groups[0].Paths[0] != 0 {
		t.Errorf("status after logout: paths %+v groups %+v configured %d; want the first path only, active, index 0 of 2", st.Paths, st.Groups, st.Configured)
	}
	if strings.Contains(sb.String(), bPortal) {
		t.Errorf("multipath status still shows the logged-out portal %s", bPortal)
	}
	ios := st.Paths[0].IOs
	if _, err := dev.ReadAt(make([]byte, 4096), 0); err != nil || m.Status(0).Paths[0].IOs <= ios {
		t.Errorf("I/O after the logout: %v, want it on the remaining path", err)
	}
	n, err = m.LogoutPortal(ctx, u.Target, st.Paths[0].Session.Portal)
	if n != 0 || !errors.Is(err, ErrLastPath) {
		t.Errorf("logout of the last portal: %d, %v; want ErrLastPath", n, err)
	}
	if n, err := m.LogoutPortal(ctx, u.Target, bPortal); n != 0 || err != nil {
		t.Errorf("second logout of %s: %d, %v; want 0, nil", bPortal, n, err)
	}

	// Log in again through the portal: a new session, back in the map.
	if n, err := m.LoginPortal(ctx, u.Target, bPortal); n != 1 || err != nil {
		t.Fatalf("LoginPortal(%s): %d, %v; want 1 path logged in", bPortal, n, err)
	}
	st = m.Status(dev.Size())
	if len(st.Paths) != 2 || st.Paths[1].Index != 1 || st.Paths[1].Session.Portal != bPortal || !st.Paths[1].Active ||
		st.Paths[1].Session.State != initiator.StateLoggedIn || len(st.Groups) != 1 || len(st.Groups[0].Paths) != 2 {
		t.Fatalf("status after logging in again: paths %+v groups %+v; want both paths active", st.Paths, st.Groups)
	}
	ios = st.Paths[1].IOs
	for i := range 4 {
		if _, err := dev.ReadAt(make([]byte, 4096), int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.Status(0).Paths[1].IOs; got <= ios {
		t.Errorf("no I/O on the path logged in again (round-robin over both)")
	}
	if n, err := m.LoginPortal(ctx, u.Target, bPortal); n != 0 || err != nil {
		t.Errorf("login of a portal already logged in: %d, %v; want 0, nil", n, err)
	}
}
