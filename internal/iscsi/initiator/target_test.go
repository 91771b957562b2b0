package initiator_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/blockdev/blockdevtest"
	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/testutil"
)

// TestSuiteAgainstRampartTarget runs the shared Device suite over a LUN of rampart's
// own target, through this initiator.
func TestSuiteAgainstRampartTarget(t *testing.T) {
	blockdevtest.Run(t, func(t *testing.T) blockdev.Device {
		d, err := initiator.OpenURL(t.Context(), testutil.StartTarget(t, 16<<20), initiator.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// TestManyCommandsInFlight keeps 16 large reads and writes in flight at once on one
// session: they must all complete (commands leave in CmdSN order) with the right data.
func TestManyCommandsInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := initiator.OpenURL(ctx, testutil.StartTarget(t, 64<<20), initiator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer blockdev.Close(d)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := bytes.Repeat([]byte{byte(g + 1)}, 1<<20)
			got := make([]byte, len(want))
			off := int64(g%16) << 22
			for i := range 20 {
				if _, err := d.WriteAt(want, off); err != nil {
					errs <- fmt.Errorf("goroutine %d op %d: %w", g, i, err)
					return
				}
				if _, err := d.ReadAt(got, off); err != nil || !bytes.Equal(got, want) {
					errs <- fmt.Errorf("goroutine %d op %d: read back: %v (equal %v)", g, i, err, bytes.Equal(got, want))
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("commands in flight never completed")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
