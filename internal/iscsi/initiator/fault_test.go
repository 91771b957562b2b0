package initiator_test

import (
	"errors"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/iscsi/initiator/initiatortest"
	"github.com/rampart-storage/rampart/internal/testutil"
)

// TestCutLinkUnderSplitWritesFails: the link of a session is cut while many writes
// carrying unsolicited data are outstanding, more than the socket buffer takes, so the
// connection's writer blocks. The NOP-Out timeout must still fail the session, and
// every write must end with ErrSessionFailed within a few NOP timeouts, not hang
// until TCP gives up (the tgt drill's hang with writes split into 8 KiB pieces).
func TestCutLinkUnderSplitWritesFails(t *testing.T) {
	u := targetOf(t, testutil.StartTarget(t, 64<<20))
	d := &initiatortest.CutDialer{}
	o := initiator.Options{
		Portal: u.Portal, TargetName: u.Target, DialContext: d.DialContext,
		NopInterval: 200 * time.Millisecond, NopTimeout: 500 * time.Millisecond,
		ReplacementTimeout: -1, // as under multipath: fail at once, the map retries elsewhere
	}
	c, err := initiator.Connect(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Cleanup(d.CloseAll) // first: a hung test must not hang its cleanup too
	if c.Session().Unsolicited() == 0 {
		t.Skip("the target takes no unsolicited data: writes wait for R2Ts and cannot fill the send buffer")
	}
	dev, err := initiator.OpenLUN(t.Context(), c, u.LUN)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	if _, err := dev.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	d.Cut(true)
	const writers = 16 // 16 MiB outstanding: far more than the 256 KiB "socket buffer"
	errs := make(chan error, writers)
	start := time.Now()
	for i := range writers {
		go func() {
			_, err := dev.WriteAt(buf, int64(i)*int64(len(buf)))
			errs <- err
		}()
	}
	deadline := time.After(10 * time.Second)
	for range writers {
		select {
		case err := <-errs:
			if !errors.Is(err, initiator.ErrSessionFailed) {
				t.Errorf("write over the cut link: %v, want ErrSessionFailed", err)
			}
		case <-deadline:
			t.Fatalf("writes over the cut link still hang after 10 s (NOP-Out timeout %v)", o.NopTimeout)
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("writes failed after %v, want within a few NOP-Out timeouts", el)
	}
}
