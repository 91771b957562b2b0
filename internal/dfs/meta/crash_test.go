package meta

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestKill9KeepsAcknowledged runs creates in a child process, kills it with
// SIGKILL mid-stream and checks that every create the child reported as
// done is in the reopened store.
func TestKill9KeepsAcknowledged(t *testing.T) {
	if dir := os.Getenv("RAMPART_META_CRASH_CHILD"); dir != "" {
		s, err := Open(dir)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for i := 0; ; i++ {
			if _, err := s.Create(RootIno, fmt.Sprintf("f%06d", i), Node{Mode: syscall.S_IFREG | 0o644}); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Println("done", i)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9KeepsAcknowledged$")
	cmd.Env = append(os.Environ(), "RAMPART_META_CRASH_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	last := -1
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "error") {
			t.Fatalf("child: %s", line)
		}
		if n, ok := strings.CutPrefix(line, "done "); ok {
			last, _ = strconv.Atoi(n)
			if last == 200 {
				cmd.Process.Kill()
				break
			}
		}
	}
	cmd.Wait()
	if last < 200 {
		t.Fatalf("child stopped after %d creates, want 200", last)
	}
	s := openStore(t, dir)
	for i := 0; i <= last; i++ {
		if _, err := s.Lookup(RootIno, fmt.Sprintf("f%06d", i)); err != nil {
			t.Fatalf("create %d was acknowledged before kill -9 but is gone: %v", i, err)
		}
	}
}
