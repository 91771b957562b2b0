package fusefs

import (
	"context"
	"sync"
	"time"
)

// The kernel interrupts a FUSE request (go-fuse then cancels its context)
// whenever the calling thread gets a signal that is not ignored. What the file
// system answers then reaches the program as it is: an EINTR is not restarted,
// not even for a handler installed with SA_RESTART. Honouring every interrupt
// made stat, statfs, open and read fail with EINTR in C programs that run a
// timer or a SIGCHLD handler (half the calls of a loop under a 50 µs SIGALRM
// timer), which a local file system never does, and in Go programs, whose
// runtime signals its threads for preemption all the time.
//
// So a request's context (patient) ignores an interrupt until the request has
// run for interruptGrace. The requests of a working cluster end long before;
// one that waits longer (for a master or chunkserver that does not answer)
// still ends with EINTR when its program is signalled, so that a program can
// be stopped, or killed, instead of hanging until the retry time runs out.
// Blocking lock waits (Setlkw) keep their own context: POSIX wants F_SETLKW
// and flock to return EINTR at once when a signal arrives.
const interruptGrace = time.Second

// patientCtx is a request's context whose cancellation (the kernel's interrupt)
// takes effect only once the request has run for interruptGrace. Values and
// the deadline come from the request's context.
type patientCtx struct {
	context.Context
	start time.Time
	done  chan struct{}
}

func (p *patientCtx) Done() <-chan struct{} { return p.done }

func (p *patientCtx) Err() error {
	select {
	case <-p.done:
		return context.Canceled
	default:
		return nil
	}
}

// patience holds the requests in progress whose interrupt may need passing on.
// One goroutine looks at them every patienceTick: a per-request goroutine or
// timer would cost more than most requests do.
var patience struct {
	mu      sync.Mutex
	live    map[*patientCtx]struct{}
	started bool
}

const patienceTick = 100 * time.Millisecond

// patient returns ctx made patient (see interruptGrace) and the function to
// call when the request ends.
func patient(ctx context.Context) (context.Context, func()) {
	if ctx.Done() == nil {
		return ctx, func() {}
	}
	p := &patientCtx{Context: ctx, start: time.Now(), done: make(chan struct{})}
	patience.mu.Lock()
	if !patience.started {
		patience.started = true
		patience.live = map[*patientCtx]struct{}{}
		go watchPatience()
	}
	patience.live[p] = struct{}{}
	patience.mu.Unlock()
	return p, func() {
		patience.mu.Lock()
		delete(patience.live, p)
		patience.mu.Unlock()
	}
}

// watchPatience passes on the interrupts of requests that have run for
// interruptGrace.
func watchPatience() {
	for range time.Tick(patienceTick) {
		patience.mu.Lock()
		for p := range patience.live {
			if time.Since(p.start) < interruptGrace {
				continue
			}
			select {
			case <-p.Context.Done():
				close(p.done)
				delete(patience.live, p)
			default:
			}
		}
		patience.mu.Unlock()
	}
}
