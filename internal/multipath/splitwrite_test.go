package multipath

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/iscsi/initiator/initiatortest"
)

// TestSplitWritesWhosePathsDie: many writes, split into commands that carry their data
// unsolicited, are outstanding when links are cut, so the cut connections' writers
// block on full send buffers. With one path left every write succeeds; with none,
// every write fails with ErrNoPath within the NOP-Out timeout plus the no_path_retry
// window, and none hangs.
func TestSplitWritesWhosePathsDie(t *testing.T) {
	u := targetURL(t)
	raw := "iscsi://" + u.Portal + "/" + u.Target + "/" + itoa(u.LUN)
	links := []*initiatortest.CutDialer{{}, {}}
	var mu sync.Mutex
	next := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const polling, retries, nopTimeout = 300 * time.Millisecond, 5, 500 * time.Millisecond
	m, err := Open(ctx, Config{
		Name: "mpathw", URLs: []string{raw, raw}, Policy: Multibus,
		PollingInterval: polling, NoPathRetry: retries,
		Session: initiator.Options{NopInterval: 200 * time.Millisecond, NopTimeout: nopTimeout},
		dial: func(ctx context.Context, o initiator.Options) pathConn {
			mu.Lock()
			defer mu.Unlock()
			o.DialContext = links[next%2].DialContext
			next++
			return initiator.NewClient(ctx, o)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	for _, l := range links {
		t.Cleanup(l.CloseAll) // first: nothing stays blocked on a cut link
	}
	if m.Unsolicited() == 0 {
		t.Skip("the target takes no unsolicited data: writes wait for R2Ts and cannot fill a send buffer")
	}
	dev, err := m.Device()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	writeAll := func(writers int) []error {
		errs := make(chan error, writers)
		for i := range writers {
			go func() {
				_, err := dev.WriteAt(buf, int64(i%32)*int64(len(buf)))
				errs <- err
			}()
		}
		var out []error
		deadline := time.After(20 * time.Second)
		for range writers {
			select {
			case err := <-errs:
				out = append(out, err)
			case <-deadline:
				t.Fatalf("%d of %d writes still hang after 20 s", writers-len(out), writers)
			}
		}
		return out
	}
	if errs := writeAll(4); errors.Join(errs...) != nil {
		t.Fatalf("writes with both paths up: %v", errors.Join(errs...))
	}

	links[0].Cut(true)
	for i, err := range writeAll(16) {
		if err != nil {
			t.Errorf("write %d with one path cut: %v, want success on the other path", i, err)
		}
	}

	links[1].Cut(true)
	start := time.Now()
	for i, err := range writeAll(16) {
		if !errors.Is(err, ErrNoPath) {
			t.Errorf("write %d with both paths cut: %v, want ErrNoPath", i, err)
		}
	}
	window := nopTimeout + retries*polling
	if el := time.Since(start); el > window+3*time.Second {
		t.Errorf("writes failed after %v, want within the NOP-Out timeout and no_path_retry window (%v) and a margin", el, window)
	}
}
