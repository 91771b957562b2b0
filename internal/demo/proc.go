package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// run runs a short command and returns its output; the error names the command and
// carries what it printed.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// inNS prefixes a command so that it runs in network namespace ns and nothing else:
// nsenter --net keeps the machine's mount namespace (mounts stay visible to all) and
// execs the command, so its pid is the command's own.
func inNS(ns string, argv ...string) []string {
	if ns == "" {
		return argv
	}
	return append([]string{"nsenter", "--net=/var/run/netns/" + ns, "--"}, argv...)
}

// startDaemon starts argv detached (own session, output to logPath) and returns the
// record to keep in the state file.
func startDaemon(role, ns string, argv []string, logPath string) (Process, error) {
	full := inNS(ns, argv...)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return Process{}, err
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Process{}, err
	}
	defer log.Close()
	fmt.Fprintf(log, "=== %s: %s\n", time.Now().Format(time.RFC3339), strings.Join(full, " "))
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Process{}, fmt.Errorf("start %s: %w", role, err)
	}
	done := make(chan struct{})
	p := Process{Role: role, NS: ns, Pid: cmd.Process.Pid, Args: full, Log: logPath, done: done}
	// Reap it if it dies while this process still runs (and tell exited); once this
	// process exits, init adopts it.
	go func() { cmd.Wait(); close(done) }()
	return p, nil
}

// execArgs is the command line a process started through inNS ends up with: nsenter
// execs the command after "--".
func execArgs(argv []string) []string {
	if len(argv) > 0 && argv[0] == "nsenter" {
		if i := slices.Index(argv, "--"); i >= 0 {
			return argv[i+1:]
		}
	}
	return argv
}

// alive reports whether p still runs the command it was started with (a pid reused
// by another program is not p). For a process this one started, its exit is known
// exactly; for one from the state file, /proc tells.
func alive(p Process) bool {
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid))
	if err != nil || zombie(p.Pid) {
		return false
	}
	if len(b) == 0 {
		return true // in the middle of an exec
	}
	got := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	return slices.Equal(got, p.Args) || slices.Equal(got, execArgs(p.Args))
}

// zombie reports whether pid has exited but is not reaped yet (state Z): it holds no
// resource but its pid.
func zombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// stop signals p with SIGTERM and waits up to grace for it to exit, then kills it.
// It returns whether the process had to be killed.
func stop(p Process, grace time.Duration) bool {
	if !alive(p) {
		return false
	}
	syscall.Kill(p.Pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(p) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(p.Pid, syscall.SIGKILL)
	for i := 0; i < 100 && alive(p); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// waitFor polls cond every interval until it holds, ctx ends or timeout passes;
// the error says what was awaited.
func waitFor(ctx context.Context, what string, timeout, interval time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: %s: not after %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo: %s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// tail returns the last n lines of a log file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// isMountPoint reports whether dir is a mount point (per /proc/self/mountinfo).
func isMountPoint(dir string) bool {
	ms, _ := mountsUnder(dir)
	return slices.Contains(ms, filepath.Clean(dir))
}

// mountsUnder lists the mount points at or below dir, deepest first, so that they can
// be unmounted in that order.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountsUnder(string(b), dir), nil
}

// parseMountsUnder is mountsUnder over the text of a mountinfo file.
func parseMountsUnder(mountinfo, dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return slices.Compact(out)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// loopsOver lists the loop devices whose backing file is at or below dir.
func loopsOver(dir string) []Loop {
	dir = filepath.Clean(dir)
	ents, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []Loop
	for _, e := range ents {
		b, err := os.ReadFile(e)
		if err != nil {
			continue
		}
		f := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if f == dir || strings.HasPrefix(f, dir+"/") {
			out = append(out, Loop{Dev: "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(e))), File: f})
		}
	}
	return out
}

// namespacesWithPrefix lists existing network namespaces named prefix*.
func namespacesWithPrefix(prefix string) []string {
	ents, _ := os.ReadDir("/var/run/netns")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// pidsInNS lists the processes in network namespace ns (as `ip netns pids` does:
// those whose /proc/PID/ns/net is the namespace's inode).
func pidsInNS(ns string) []int {
	var want syscall.Stat_t
	if err := syscall.Stat("/var/run/netns/"+ns, &want); err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev && !zombie(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// errNotRoot is returned where the netns lab needs root.
var errNotRoot = errors.New("demo: the lab of namespaces needs root")
