package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
	"unsafe"
)

// StepResult is the outcome of one failure rehearsed by the drill.
type StepResult struct {
	Name     string
	Events   []string // what happened, with times since the step began
	Counts   Counts   // the client's requests during the step
	Probe    time.Duration
	Failures []string // invariants that did not hold
	Skipped  string   // why the step did not run, if it did not
}

// OK reports whether every invariant of the step held.
func (r StepResult) OK() bool {
	return len(r.Failures) == 0 && r.Counts.Failures == 0 && r.Counts.Mismatches == 0
}

// step accumulates a StepResult.
type step struct {
	StepResult
	start time.Time
}

func newStep(name string) *step { return &step{StepResult: StepResult{Name: name}, start: time.Now()} }

func (s *step) event(format string, args ...any) {
	s.Events = append(s.Events, fmt.Sprintf("%5.1fs  ", time.Since(s.start).Seconds())+fmt.Sprintf(format, args...))
}

func (s *step) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.Failures = append(s.Failures, msg)
	s.event("FAILED: %s", msg)
}

// Drill rehearses the seed's failures one after another while a client keeps
// fetching the site and writing files through the web host's mount, and reports
// each. It fails if any invariant did not hold.
func Drill(ctx context.Context, o Options) error {
	st, err := LoadState(o.Dir)
	if err != nil {
		return fmt.Errorf("demo drill: no demo in %s (start one with `rampart demo`): %w", o.Dir, err)
	}
	if st.Mode != "netns" {
		return fmt.Errorf("demo drill: the demo in %s runs on loopback (not root): the drill cuts networks and disks of the namespace lab, which needs root", o.Dir)
	}
	t := o.topo()
	if t.Bin == "" {
		t.Bin = st.Bin
	}
	c, err := newClient(st, t.WebMount())
	if err != nil {
		return err
	}
	cctx, stopClient := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.run(cctx) }()
	defer func() { stopClient(); wg.Wait() }()

	o.printf("drill: a client fetches %s and the newest file every 100 ms, and every 200 ms writes a\n"+
		"64 KiB file through %s (fsync, read back; the %d newest are kept),\n"+
		"checking every SHA-256; each step below breaks one thing and repairs it.\n\n", st.Site, t.WebMount(), keepFiles)
	sleep(ctx, 2*time.Second)
	warm := c.take()
	o.printf("warm-up: %d requests, %d failed, %d checksum mismatches\n\n", warm.Requests, warm.Failures, warm.Mismatches)

	steps := []func(context.Context, Topology, *State, *client) StepResult{
		drillCutNetwork, drillRAIDMember, drillKillChunkserver, drillRestartMaster,
	}
	var results []StepResult
	for i, f := range steps {
		r := f(ctx, t, st, c)
		results = append(results, r)
		printStep(o, i+1, r)
		if ctx.Err() != nil {
			break
		}
	}
	stopClient()
	wg.Wait()
	final := c.verifyAll(ctx)
	o.printf("final check: every file written read back through the mount and over HTTP: %d requests, %d failed, %d checksum mismatches\n",
		final.Requests, final.Failures, final.Mismatches)
	failed := final.Failures + final.Mismatches
	for _, e := range final.Errors {
		o.printf("  %s\n", e)
	}
	var summary []string
	for _, r := range results {
		switch {
		case r.Skipped != "":
			summary = append(summary, r.Name+": skipped")
		case r.OK():
			summary = append(summary, r.Name+": ok")
		default:
			summary = append(summary, r.Name+": FAILED")
			failed++
		}
	}
	o.printf("\n")
	FormatSummary(o.Out, results)
	o.printf("\ndrill summary: %s\n", strings.Join(summary, "; "))
	if failed > 0 {
		return errors.New("demo drill: an invariant did not hold (see above)")
	}
	o.printf("drill OK: no failed request, no checksum mismatch, paths and goal restored\n")
	return nil
}

// FormatSummary prints one line per step: the interruption the client saw, its
// requests, failures and checksum mismatches, and the verdict.
func FormatSummary(w io.Writer, results []StepResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tINTERRUPTION\tREQUESTS\tFAILED\tMISMATCHES\tRESULT")
	for _, r := range results {
		verdict, stall := "ok", r.Counts.Longest.Round(time.Millisecond).String()
		switch {
		case r.Skipped != "":
			verdict, stall = "skipped", "-"
		case !r.OK():
			verdict = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", r.Name, stall, r.Counts.Requests, r.Counts.Failures, r.Counts.Mismatches, verdict)
	}
	tw.Flush()
}

func printStep(o Options, n int, r StepResult) {
	o.printf("== step %d: %s\n", n, r.Name)
	if r.Skipped != "" {
		o.printf("  skipped: %s\n\n", r.Skipped)
		return
	}
	for _, e := range r.Events {
		o.printf("  %s\n", e)
	}
	c := r.Counts
	o.printf("  client: %d requests, %d failed, %d checksum mismatches; longest request %s (the interruption seen)\n",
		c.Requests, c.Failures, c.Mismatches, c.Longest.Round(time.Millisecond))
	for _, e := range c.Errors {
		o.printf("    %s\n", e)
	}
	if r.Probe > 0 {
		o.printf("  block path: longest read of a LUN %s\n", r.Probe.Round(time.Millisecond))
	}
	verdict := "ok"
	if !r.OK() {
		verdict = "FAILED"
	}
	o.printf("  => %s\n\n", verdict)
}

// mapStatus is what the drill reads of `rampart multipath status --json`.
type mapStatus struct {
	Name  string    `json:"name"`
	Time  time.Time `json:"time"`
	Paths []struct {
		URL    string `json:"url"`
		Active bool   `json:"active"`
		State  string `json:"state"`
	} `json:"paths"`
}

// Path states of `rampart multipath status`.
const (
	pathReady  = "ready"
	pathFaulty = "faulty"
)

// pathStates reads chunk host i's multipath map of LUN l with `rampart multipath
// status --json`.
func pathStates(t Topology, i, l int) (mapStatus, error) {
	out, err := exec.Command(t.Bin, "multipath", "status", "--json", "--status-dir", t.StatusDir(i)).Output()
	if err != nil {
		return mapStatus{}, fmt.Errorf("demo: multipath status of %s: %w", ChunkName(i), err)
	}
	var sts []mapStatus
	if err := json.Unmarshal(out, &sts); err != nil {
		return mapStatus{}, fmt.Errorf("demo: multipath status --json of %s: %w", ChunkName(i), err)
	}
	for _, s := range sts {
		if s.Name == MapName(l) {
			return s, nil
		}
	}
	return mapStatus{}, fmt.Errorf("demo: %s has no map %s", ChunkName(i), MapName(l))
}

// pathState is the state of LUN l's path through storage network n ("" if unknown).
func pathState(t Topology, i, l, n int) (state string, active bool) {
	s, err := pathStates(t, i, l)
	if err != nil {
		return "", false
	}
	for _, p := range s.Paths {
		if p.URL == LUNURLs(i, l)[n-1] {
			return p.State, p.Active
		}
	}
	return "", false
}

// allReady reports whether every path of every map of chunk host i is ready.
func allReady(t Topology, i int) bool {
	for l := 0; l < LUNs; l++ {
		s, err := pathStates(t, i, l)
		if err != nil || len(s.Paths) == 0 {
			return false
		}
		for _, p := range s.Paths {
			if p.State != pathReady {
				return false
			}
		}
		// Fresh: the attach rewrites its status every 500 ms at most.
		if time.Since(s.Time) >= 5*time.Second {
			return false
		}
	}
	return true
}

// pathsText is the state of every map's path over storage network n, for the step's
// events: "mpatha faulty (active false), mpathb faulty (active false)".
func pathsText(t Topology, i, n int) string {
	var parts []string
	for l := 0; l < LUNs; l++ {
		state, active := pathState(t, i, l, n)
		if state == "" {
			state = "unknown"
		}
		parts = append(parts, fmt.Sprintf("%s %s (active %v)", MapName(l), state, active))
	}
	return strings.Join(parts, ", ")
}

// probe reads 4 KiB blocks of a LUN with O_DIRECT (past every cache) until ctx ends
// and returns the longest read.
func probe(ctx context.Context, path string) (time.Duration, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	blocks := fi.Size() / 4096
	raw := make([]byte, 8192)
	off := 4096 - int(uintptr(unsafe.Pointer(&raw[0]))%4096)
	buf := raw[off%4096 : off%4096+4096]
	var longest time.Duration
	for n := int64(0); ctx.Err() == nil; n++ {
		t := time.Now()
		if _, err := f.ReadAt(buf, (n*7919%blocks)*4096); err != nil {
			return longest, fmt.Errorf("read %s: %w", path, err)
		}
		longest = max(longest, time.Since(t))
		sleep(ctx, 50*time.Millisecond)
	}
	return longest, nil
}

// drillCutNetwork cuts chunk1's link to storage network 1, as pulling its cable: the
// path over it of both its maps (mpatha and mpathb) must go faulty, then ready again.
func drillCutNetwork(ctx context.Context, t Topology, st *State, c *client) StepResult {
	s := newStep("cut storage network 1 of chunk1")
	const i, n = 1, 1
	ns := NSPrefix + ChunkName(i)
	pctx, stopProbe := context.WithCancel(ctx)
	probeMax := make([]time.Duration, LUNs)
	probeErr := make([]error, LUNs)
	var wg sync.WaitGroup
	for l := 0; l < LUNs; l++ {
		wg.Add(1)
		go func() { defer wg.Done(); probeMax[l], probeErr[l] = probe(pctx, t.LUNFile(i, l)) }()
	}
	stop := func() {
		stopProbe()
		wg.Wait()
	}
	c.take()
	s.start = time.Now()
	s.event("paths over %s: %s; ip -n %s link set %s down", StorageAddr(n), pathsText(t, i, n), ns, NetStorage1)
	if _, err := run(ctx, "ip", "-n", ns, "link", "set", NetStorage1, "down"); err != nil {
		s.fail("%v", err)
		stop()
		return s.StepResult
	}
	for l := 0; l < LUNs; l++ {
		err := waitFor(ctx, MapName(l)+" path faulty", 30*time.Second, 50*time.Millisecond, func() bool {
			state, _ := pathState(t, i, l, n)
			return state == pathFaulty
		})
		if err != nil {
			s.fail("%s: the path over %s was never shown faulty: %v", MapName(l), StorageAddr(n), err)
		} else {
			s.event("%s: path over %s shown faulty; I/O goes over %s", MapName(l), StorageAddr(n), StorageAddr(2))
		}
	}
	sleep(ctx, 5*time.Second)
	s.event("ip -n %s link set %s up", ns, NetStorage1)
	if _, err := run(ctx, "ip", "-n", ns, "link", "set", NetStorage1, "up"); err != nil {
		s.fail("%v", err)
	}
	if err := waitFor(ctx, "paths ready", 60*time.Second, 100*time.Millisecond, func() bool { return allReady(t, i) }); err != nil {
		s.fail("paths of %s not all ready again: %v", ChunkName(i), err)
	} else {
		s.event("all paths of both maps ready again (over %s: %s)", StorageAddr(n), pathsText(t, i, n))
	}
	sleep(ctx, time.Second)
	stop()
	var probes []string
	for l := 0; l < LUNs; l++ {
		s.Probe = max(s.Probe, probeMax[l])
		probes = append(probes, fmt.Sprintf("%s %s", MapName(l), probeMax[l].Round(time.Millisecond)))
		if probeErr[l] != nil {
			s.fail("%s failed a read: %v", MapName(l), probeErr[l])
		}
	}
	s.event("longest O_DIRECT read of each LUN during the step: %s", strings.Join(probes, ", "))
	s.Counts = c.take()
	return s.StepResult
}

// drillKillChunkserver kills chunk3's chunkserver with SIGKILL, waits until the master
// has brought every chunk back to its goal, and restarts it.
func drillKillChunkserver(ctx context.Context, t Topology, st *State, c *client) StepResult {
	s := newStep("kill -9 a chunkserver; re-replication")
	const i = 3
	role := "chunkserver " + ChunkName(i)
	c.take()
	s.start = time.Now()
	p, ok := st.FindProcess(role)
	if !ok || !alive(p) {
		s.fail("%s is not running", role)
		s.Counts = c.take()
		return s.StepResult
	}
	if info, err := dfsInfo(ctx, t.Bin, MasterClientAddr()); err == nil {
		s.event("before: %d chunks, %d under goal, %d live chunkservers", info.Chunks.Total, info.Chunks.Undergoal, liveServers(info))
	}
	s.event("kill -9 %d (%s)", p.Pid, role)
	syscall.Kill(p.Pid, syscall.SIGKILL)
	lost, under := false, 0
	err := waitFor(ctx, "goal restored", 120*time.Second, 250*time.Millisecond, func() bool {
		info, err := dfsInfo(ctx, t.Bin, MasterClientAddr())
		if err != nil {
			return false
		}
		if !lost && liveServers(info) < Chunks {
			lost = true
			s.event("master: chunkserver lost; %d of %d chunks under goal", info.Chunks.Undergoal, info.Chunks.Total)
		}
		under = max(under, info.Chunks.Undergoal)
		return lost && info.Chunks.Undergoal == 0 && info.Chunks.Missing == 0
	})
	if err != nil {
		s.fail("goal not restored: %v", err)
	} else {
		info, _ := dfsInfo(ctx, t.Bin, MasterClientAddr())
		s.event("re-replicated: 0 under goal, %d missing, %d chunks on %d live chunkservers", info.Chunks.Missing, info.Chunks.Total, liveServers(info))
	}
	if err := startChunkserver(t, st, i); err != nil {
		s.fail("restart %s: %v", role, err)
	} else if err := waitFor(ctx, "chunkserver back", 30*time.Second, 250*time.Millisecond, func() bool {
		info, err := dfsInfo(ctx, t.Bin, MasterClientAddr())
		return err == nil && liveServers(info) == Chunks
	}); err != nil {
		s.fail("%s not back: %v", role, err)
	} else {
		s.event("%s restarted and registered: %d live chunkservers", role, Chunks)
	}
	s.Counts = c.take()
	return s.StepResult
}

// drillRestartMaster stops the master and starts it again on the same metadata.
func drillRestartMaster(ctx context.Context, t Topology, st *State, c *client) StepResult {
	s := newStep("restart the master")
	c.take()
	s.start = time.Now()
	p, ok := st.FindProcess("master")
	if !ok || !alive(p) {
		s.fail("the master is not running")
		s.Counts = c.take()
		return s.StepResult
	}
	s.event("stop the master (pid %d, SIGTERM)", p.Pid)
	if stop(p, 10*time.Second) {
		s.event("the master did not stop within 10 s: killed")
	}
	down := time.Now()
	if err := startMaster(ctx, t, st); err != nil {
		s.fail("restart: %v", err)
		s.Counts = c.take()
		return s.StepResult
	}
	s.event("master answering again after %.1fs", time.Since(down).Seconds())
	if err := waitFor(ctx, "chunkservers registered", 30*time.Second, 250*time.Millisecond, func() bool {
		info, err := dfsInfo(ctx, t.Bin, MasterClientAddr())
		return err == nil && liveServers(info) == Chunks
	}); err != nil {
		s.fail("chunkservers did not register again: %v", err)
	} else {
		info, _ := dfsInfo(ctx, t.Bin, MasterClientAddr())
		s.event("%d chunkservers registered again; %d chunks, %d under goal", Chunks, info.Chunks.Total, info.Chunks.Undergoal)
	}
	sleep(ctx, 3*time.Second)
	s.Counts = c.take()
	return s.StepResult
}
