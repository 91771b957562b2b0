package local_test

import (
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rampart-storage/rampart/internal/dfs/local/localtest"
)

// TestSignalsDoNotFailCalls: a thread that is signalled again and again (a
// handler installed with SA_RESTART, as a program's timer or SIGCHLD handler
// would be) sees no EINTR from statfs, open, read and close on the mount:
// the kernel does not restart a FUSE call the file system answered with
// EINTR, so the mount must not answer that to an interrupt of a call that
// would end normally. (Before, about half such calls failed.)
func TestSignalsDoNotFailCalls(t *testing.T) {
	_, mnts := localtest.Mounts(t, 1)
	p := filepath.Join(mnts[0], "f")
	if err := os.WriteFile(p, []byte("some data"), 0o644); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGUSR1) // Go installs its handler with SA_RESTART
	defer signal.Stop(sigs)
	go func() {
		for range sigs {
		}
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid, tid := unix.Getpid(), unix.Gettid()
	var stop atomic.Bool
	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			if unix.Tgkill(pid, tid, unix.SIGUSR1) == nil {
				sent.Add(1)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	var eintr, calls int
	buf := make([]byte, 64)
	count := func(err error) {
		calls++
		if err == unix.EINTR {
			eintr++
		} else if err != nil {
			t.Errorf("call %d: %v", calls, err)
		}
	}
	for range 1000 {
		var s unix.Statfs_t
		count(unix.Statfs(mnts[0], &s))
		fd, err := unix.Open(p, unix.O_RDONLY, 0)
		count(err)
		if err != nil {
			continue
		}
		_, err = unix.Read(fd, buf)
		count(err)
		count(unix.Close(fd))
	}
	stop.Store(true)
	<-done
	t.Logf("%d calls, %d signals sent to the calling thread, %d EINTR", calls, sent.Load(), eintr)
	if eintr > 0 {
		t.Errorf("%d of %d calls failed with EINTR", eintr, calls)
	}
}
