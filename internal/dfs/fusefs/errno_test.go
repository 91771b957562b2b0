package fusefs

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestErrno: an interrupted request (its context cancelled once the request has
// run for interruptGrace, see patient) must reach the program as EINTR, not as EIO; errnos pass through; other
// errors are EIO.
func TestErrno(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{fmt.Errorf("Open: %w", context.Canceled), syscall.EINTR},
		{fmt.Errorf("unlink: %w", syscall.ENOENT), syscall.ENOENT},
		{fmt.Errorf("Open: %w", context.DeadlineExceeded), syscall.EIO},
		{errors.New("chunkserver said no"), syscall.EIO},
	} {
		if got := errno(tt.err); got != tt.want {
			t.Errorf("errno(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestPatientContext: an interrupt (the request context's cancellation) takes
// effect only once the request has run for interruptGrace; a request that
// ends first never sees it.
func TestPatientContext(t *testing.T) {
	parent, cancel := context.WithCancel(t.Context())
	ctx, done := patient(parent)
	defer done()
	cancel()
	time.Sleep(interruptGrace / 2)
	if err := ctx.Err(); err != nil {
		t.Fatalf("interrupt seen after %v: %v", interruptGrace/2, err)
	}
	select {
	case <-ctx.Done():
		t.Fatal("Done closed before the grace time")
	default:
	}
	select {
	case <-ctx.Done():
	case <-time.After(interruptGrace + 5*patienceTick):
		t.Fatalf("interrupt not passed on %v after the request started", interruptGrace*3/2+5*patienceTick)
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("Err after the interrupt: %v", ctx.Err())
	}

	// A request that ended is forgotten, interrupted or not.
	parent2, cancel2 := context.WithCancel(t.Context())
	ctx2, done2 := patient(parent2)
	done2()
	cancel2()
	patience.mu.Lock()
	_, live := patience.live[ctx2.(*patientCtx)]
	patience.mu.Unlock()
	if live {
		t.Error("an ended request is still watched")
	}
	if ctx, _ := patient(context.Background()); ctx != context.Background() {
		t.Error("a context that cannot be cancelled was wrapped")
	}
	// The caller (uid, gid: new files are theirs) still comes through.
	fctx := &fuse.Context{Caller: fuse.Caller{Owner: fuse.Owner{Uid: 7, Gid: 8}}, Cancel: make(chan struct{})}
	ctx3, done3 := patient(fctx)
	defer done3()
	if c, ok := fuse.FromContext(ctx3); !ok || c.Uid != 7 || c.Gid != 8 {
		t.Errorf("caller through a patient context: %+v, %v", c, ok)
	}
}
