package main

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestApplyNice sets a nice level in a child process (it changes every thread of the
// process): every thread has it, also threads the runtime starts afterwards. A level
// out of range is a usage error.
func TestApplyNice(t *testing.T) {
	if os.Getenv("RAMPART_TEST_NICE_CHILD") != "" {
		niceChild()
		return
	}
	if err := applyNice(slog.New(slog.DiscardHandler), 25); !errors.Is(err, errUsage) {
		t.Errorf("applyNice(25): %v, want a usage error", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestApplyNice$", "-test.v")
	cmd.Env = append(os.Environ(), "RAMPART_TEST_NICE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "all threads at nice 7") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func niceChild() {
	if err := applyNice(slog.New(slog.DiscardHandler), 7); err != nil {
		panic(err)
	}
	// New threads: goroutines that hold their OS thread while others start.
	var wg sync.WaitGroup
	hold := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			runtime.LockOSThread()
			wg.Done()
			<-hold
		}()
	}
	wg.Wait()
	defer close(hold)
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, tk := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + tk.Name() + "/stat")
		if err != nil {
			continue
		}
		// Field 19 is the nice value; fields after the ")" of the command name.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if f[16] != "7" {
			println("thread", tk.Name(), "at nice", f[16])
			os.Exit(1)
		}
	}
	println("all threads at nice 7:", len(tasks), "threads")
}
