package demo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// Options configure every demo command.
type Options struct {
	Dir string    // demo directory (DefaultDir)
	Bin string    // the rampart binary the roles run (os.Executable())
	Out io.Writer // where the demo reports
	// Verbose starts every role with -v (debug logs in DIR/.../*.log).
	Verbose bool
}

func (o Options) topo() Topology { return Topology{Dir: o.Dir, Bin: o.Bin, Verbose: o.Verbose} }

func (o Options) printf(format string, args ...any) { fmt.Fprintf(o.Out, format, args...) }

// Up builds the lab, after removing what an earlier demo left, and reports it.
// As root each host is a network namespace; otherwise the file system runs on
// loopback in one process (see upLoopback).
func Up(ctx context.Context, o Options) error {
	start := time.Now()
	if err := cleanLeftovers(ctx, o); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return upLoopback(ctx, o, start)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	st := NewState(o.Dir, o.Bin, "netns")
	if err := st.Save(); err != nil {
		return err
	}
	if err := claimLab(o.Dir); err != nil {
		return err
	}
	o.printf("building the seed lab in %s (state: %s)\n", o.Dir, StatePath(o.Dir))
	if err := upNetworks(ctx, st); err != nil {
		return err
	}
	o.printf("  networks: %d namespaces, storage 10.3.1.0/24 and 10.3.2.0/24, service 10.3.250.0/24 (%.1fs)\n",
		len(st.Namespaces), time.Since(start).Seconds())
	t := o.topo()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = upStorage(ctx, o, t, st) }()
	go func() { defer wg.Done(); errs[1] = upMaster(ctx, t, st) }()
	wg.Wait()
	if err := firstErr(errs); err != nil {
		return err
	}
	o.printf("  storage: 3 RAID 5 arrays served as 3 targets; master up (%.1fs)\n", time.Since(start).Seconds())
	errs = make([]error, Chunks)
	for i := 1; i <= Chunks; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i-1] = upChunk(ctx, t, st, i) }()
	}
	wg.Wait()
	if err := firstErr(errs); err != nil {
		return err
	}
	o.printf("  chunk hosts: %d LUNs each (mpatha, mpathb) attached over 2 paths, XFS on each, chunkservers started (%.1fs)\n", LUNs, time.Since(start).Seconds())
	if err := upWeb(ctx, t, st); err != nil {
		return err
	}
	st.Set(func(s *State) { s.UpSeconds = time.Since(start).Seconds() })
	o.printf("  web: %s serving %s from the DFS mount (%.1fs)\n\n", st.WebServer, st.Site, st.UpSeconds)
	Report(ctx, o.Out, t, st)
	o.printf("\nthe lab was up in %.1f s. Next: `rampart demo drill`, then `rampart demo down`.\n", st.UpSeconds)
	return nil
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// upNetworks creates the namespaces and links, recording each namespace at once.
func upNetworks(ctx context.Context, st *State) error {
	for _, args := range IPCommands() {
		if _, err := run(ctx, "ip", args...); err != nil {
			return fmt.Errorf("demo: build networks: %w", err)
		}
		switch {
		case len(args) == 3 && args[0] == "netns" && args[1] == "add":
			if err := st.AddNamespace(args[2]); err != nil {
				return err
			}
		case len(args) > 2 && args[0] == "link" && args[1] == "add" && args[2] == HostLink:
			if err := st.Set(func(s *State) { s.HostLink = HostLink }); err != nil {
				return err
			}
		}
	}
	return nil
}

// upStorage creates the disks and arrays and serves them.
func upStorage(ctx context.Context, o Options, t Topology, st *State) error {
	files := []string{t.Spare()}
	for n := 1; n <= 3*Chunks; n++ {
		files = append(files, t.Disk(n))
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			return err
		}
		if err := os.Truncate(f, DiskSize); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, Chunks)
	for a := 0; a < Chunks; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := append([]string{"raid", "create", "--level", "5", "--name", fmt.Sprintf("md%d", a)}, t.ArrayMembers(a)...)
			_, errs[a] = run(ctx, t.Bin, args...)
		}()
	}
	wg.Wait()
	if err := firstErr(errs); err != nil {
		return fmt.Errorf("demo: storage host: %w", err)
	}
	serials := make([]string, Chunks*LUNs)
	for i := range serials {
		var b [8]byte
		rand.Read(b[:])
		serials[i] = hex.EncodeToString(b[:])
	}
	if err := os.WriteFile(t.TargetConfigPath(), []byte(t.TargetConfig(serials)), 0o600); err != nil {
		return err
	}
	p, err := startDaemon("target storage", Hosts()[0].NS(), t.argv(t.TargetArgs()),
		filepath.Join(t.Dir, "storage", "target.log"))
	if err != nil {
		return err
	}
	if err := st.AddProcess(p); err != nil {
		return err
	}
	for n := 1; n <= 2; n++ {
		addr := fmt.Sprintf("%s:%d", StorageAddr(n), PortISCSI)
		err := waitFor(ctx, "target listening on "+addr, 15*time.Second, 50*time.Millisecond, func() bool {
			return tcpOpenIn(ctx, NSPrefix+"chunk1", addr) && alive(p)
		})
		if err != nil {
			return fmt.Errorf("%w\n%s", err, tail(p.Log, 10))
		}
	}
	return nil
}

// tcpOpenIn reports whether a TCP connection to addr succeeds from namespace ns.
func tcpOpenIn(ctx context.Context, ns, addr string) bool {
	host, port, _ := strings.Cut(addr, ":")
	argv := inNS(ns, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", host, port))
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return exec.CommandContext(c, argv[0], argv[1:]...).Run() == nil
}

func upMaster(ctx context.Context, t Topology, st *State) error {
	if err := os.MkdirAll(t.MasterDir(), 0o755); err != nil {
		return err
	}
	return startMaster(ctx, t, st)
}

// startMaster starts (or restarts) the master and waits until it answers.
func startMaster(ctx context.Context, t Topology, st *State) error {
	p, err := startDaemon("master", NSPrefix+"master", t.argv(t.MasterArgs()),
		filepath.Join(t.Dir, "master", "master.log"))
	if err != nil {
		return err
	}
	if err := st.AddProcess(p); err != nil {
		return err
	}
	err = waitFor(ctx, "master answering on "+MasterClientAddr(), 15*time.Second, 50*time.Millisecond, func() bool {
		_, err := dfsInfo(ctx, t.Bin, MasterClientAddr())
		return err == nil && alive(p)
	})
	if err != nil {
		if alive(p) {
			// A master that runs but does not answer: have Go print every goroutine's
			// stack to its log (SIGQUIT), for whoever debugs it.
			syscall.Kill(p.Pid, syscall.SIGQUIT)
			err = fmt.Errorf("%w (its goroutines are dumped in %s)", err, p.Log)
		}
		return fmt.Errorf("%w\n%s", err, tail(p.Log, 10))
	}
	return nil
}

// upChunk attaches chunk host i's LUNs, puts XFS on each and starts its chunkserver
// on them.
func upChunk(ctx context.Context, t Topology, st *State, i int) error {
	for l := 0; l < LUNs; l++ {
		if err := os.MkdirAll(t.AttachDir(i, l), 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(t.DataDir(i, l), 0o755); err != nil {
			return err
		}
	}
	// Both attaches log in at once, and both LUNs get their loop device and XFS at once.
	procs := make([]Process, LUNs)
	for l := 0; l < LUNs; l++ {
		p, err := startDaemon("attach "+ChunkName(i)+" "+MapName(l), NSPrefix+ChunkName(i), t.argv(t.AttachArgs(i, l)),
			filepath.Join(t.ChunkDir(i), "attach-"+MapName(l)+".log"))
		if err != nil {
			return err
		}
		if err := st.AddProcess(p); err != nil {
			return err
		}
		procs[l] = p
	}
	errs := make([]error, LUNs)
	var wg sync.WaitGroup
	for l, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[l] = upLUN(ctx, t, st, i, l, p) }()
	}
	wg.Wait()
	if err := firstErr(errs); err != nil {
		return err
	}
	return startChunkserver(t, st, i)
}

// upLUN waits for chunk host i's attach p to show LUN l, then puts a loop device and
// XFS on it and mounts it at its data folder.
func upLUN(ctx context.Context, t Topology, st *State, i, l int, p Process) error {
	host := ChunkName(i) + " " + MapName(l)
	err := waitFor(ctx, host+": LUN attached at "+t.LUNFile(i, l), 20*time.Second, 50*time.Millisecond, func() bool {
		_, err := os.Stat(t.LUNFile(i, l))
		return err == nil || !alive(p)
	})
	if err == nil && !alive(p) {
		err = fmt.Errorf("demo: %s: attach exited", host)
	}
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tail(p.Log, 10))
	}
	if err := st.AddMount(t.AttachDir(i, l)); err != nil {
		return err
	}
	out, err := run(ctx, "losetup", "--find", "--show", t.LUNFile(i, l))
	if err != nil {
		return fmt.Errorf("demo: %s: %w", host, err)
	}
	loop := strings.TrimSpace(out)
	if err := st.AddLoop(Loop{Dev: loop, File: t.LUNFile(i, l)}); err != nil {
		return err
	}
	// -K: no discard pass, which over a fresh sparse LUN is only slow.
	label := filepath.Base(t.DataDir(i, l))
	if _, err := run(ctx, "mkfs.xfs", "-q", "-f", "-K", "-L", label, loop); err != nil {
		return fmt.Errorf("demo: %s: %w", host, err)
	}
	if _, err := run(ctx, "mount", "-t", "xfs", loop, t.DataDir(i, l)); err != nil {
		return fmt.Errorf("demo: %s: %w", host, err)
	}
	return st.AddMount(t.DataDir(i, l))
}

// startChunkserver starts (or restarts) chunk host i's chunkserver.
func startChunkserver(t Topology, st *State, i int) error {
	p, err := startDaemon("chunkserver "+ChunkName(i), NSPrefix+ChunkName(i), t.argv(t.ChunkserverArgs(i)),
		filepath.Join(t.ChunkDir(i), "chunkserver.log"))
	if err != nil {
		return err
	}
	return st.AddProcess(p)
}

// dfsInfo asks the master for its state through `rampart info --json`.
func dfsInfo(ctx context.Context, bin, master string) (proto.Info, error) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, bin, "info", "--master", master, "--json")
	cmd.WaitDelay = time.Second // return even if the killed command cannot die at once
	out, err := cmd.Output()
	if err != nil {
		return proto.Info{}, fmt.Errorf("demo: rampart info: %w", err)
	}
	var info proto.Info
	if err := json.Unmarshal(out, &info); err != nil {
		return proto.Info{}, fmt.Errorf("demo: rampart info --json: %w", err)
	}
	return info, nil
}

func liveServers(info proto.Info) int {
	n := 0
	for _, s := range info.Servers {
		if s.Live {
			n++
		}
	}
	return n
}

// IndexHTML is the site's page, written to the file system by the demo.
func IndexHTML(started time.Time) string {
	return fmt.Sprintf(`<!doctype html>
<title>rampart demo</title>
<h1>Well that's a highly-available little storage setup!</h1>
<p>Served from the rampart file system mounted on the web host: every chunk kept on two
of three chunkservers, each storing on XFS over a multipath iSCSI LUN of a RAID 5 array.</p>
<p>Built %s.</p>
`, started.UTC().Format(time.RFC3339))
}

// upWeb mounts the file system on the web host, writes the site and serves it.
func upWeb(ctx context.Context, t Topology, st *State) error {
	ns := NSPrefix + "web"
	if err := waitFor(ctx, "three live chunkservers", 20*time.Second, 100*time.Millisecond, func() bool {
		info, err := dfsInfo(ctx, t.Bin, MasterClientAddr())
		return err == nil && liveServers(info) == Chunks
	}); err != nil {
		return err
	}
	if err := os.MkdirAll(t.WebMount(), 0o755); err != nil {
		return err
	}
	p, err := startDaemon("mount web", ns, t.argv(t.MountArgs()), filepath.Join(t.Dir, "web", "mount.log"))
	if err != nil {
		return err
	}
	if err := st.AddProcess(p); err != nil {
		return err
	}
	if err := waitFor(ctx, "web: file system mounted at "+t.WebMount(), 15*time.Second, 50*time.Millisecond, func() bool {
		return isMountPoint(t.WebMount()) || !alive(p)
	}); err != nil || !alive(p) {
		return fmt.Errorf("demo: web: mount failed: %v\n%s", err, tail(p.Log, 10))
	}
	if err := st.AddMount(t.WebMount()); err != nil {
		return err
	}
	index := IndexHTML(st.Started)
	if err := os.WriteFile(filepath.Join(t.WebMount(), "index.html"), []byte(index), 0o644); err != nil {
		return fmt.Errorf("demo: web: write index.html: %w", err)
	}
	sum := sha256.Sum256([]byte(index))
	if err := startWebServer(t, st); err != nil {
		return err
	}
	st.Set(func(s *State) {
		s.Site, s.Index, s.Master = SiteURL(), hex.EncodeToString(sum[:]), MasterClientAddr()
	})
	return waitFor(ctx, "site answering at "+SiteURL(), 15*time.Second, 100*time.Millisecond, func() bool {
		got, err := fetch(ctx, http.DefaultClient, SiteURL())
		return err == nil && got == st.Index
	})
}

// startWebServer serves the mount with nginx when it is installed, as in the lab,
// else with `rampart demo web`.
func startWebServer(t Topology, st *State) error {
	ns := NSPrefix + "web"
	dir := filepath.Join(t.Dir, "web")
	var argv []string
	server := "rampart"
	if nginx, err := exec.LookPath("nginx"); err == nil {
		server = "nginx"
		if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
			return err
		}
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(NginxConf(dir, t.WebMount())), 0o644); err != nil {
			return err
		}
		argv = []string{nginx, "-c", conf, "-e", filepath.Join(dir, "nginx-error.log"), "-g", "daemon off;"}
	} else {
		argv = t.argv(t.WebArgs())
	}
	p, err := startDaemon("web "+server, ns, argv, filepath.Join(dir, "web.log"))
	if err != nil {
		return err
	}
	if err := st.Set(func(s *State) { s.WebServer = server }); err != nil {
		return err
	}
	return st.AddProcess(p)
}

// fetch GETs url and returns the hex SHA-256 of the body; a status other than 200
// is an error.
func fetch(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
