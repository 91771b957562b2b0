package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Loopback mode: without root there are no namespaces, loop devices or kernel file
// systems to make, so the demo runs the file system alone: a master and three
// chunkservers in one process (`rampart server`) on 127.0.0.1, mounted with FUSE
// where fusermount lets an ordinary user mount, and the site served from the mount.
const (
	LoopbackMaster = "127.0.0.1:19421"
	// LoopbackConsole is the master's web console: not 9425, which a DFS run by
	// hand on this machine may hold.
	LoopbackConsole = "127.0.0.1:19425"
	LoopbackWeb     = "127.0.0.1:18080"
)

func upLoopback(ctx context.Context, o Options, start time.Time) error {
	o.printf("not root: no namespaces, RAID, iSCSI or multipath; falling back to the file system alone\n" +
		"on loopback, in one process (`rampart server`). Run as root for the whole lab.\n")
	dir := filepath.Join(o.Dir, "single")
	www := filepath.Join(dir, "www")
	for _, d := range []string{filepath.Join(dir, "data"), www} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	st := NewState(o.Dir, o.Bin, "loopback")
	if err := st.Save(); err != nil {
		return err
	}
	p, err := startDaemon("server", "", []string{o.Bin, "server", "--dir", filepath.Join(dir, "data"), "--listen", LoopbackMaster, "--http", LoopbackConsole},
		filepath.Join(dir, "server.log"))
	if err != nil {
		return err
	}
	if err := st.AddProcess(p); err != nil {
		return err
	}
	if err := waitFor(ctx, "three live chunkservers", 20*time.Second, 100*time.Millisecond, func() bool {
		info, err := dfsInfo(ctx, o.Bin, LoopbackMaster)
		return err == nil && liveServers(info) == Chunks
	}); err != nil {
		return fmt.Errorf("%w\n%s", err, tail(p.Log, 10))
	}
	m, err := startDaemon("mount", "", []string{o.Bin, "mount", www, "--master", LoopbackMaster}, filepath.Join(dir, "mount.log"))
	if err != nil {
		return err
	}
	if err := st.AddProcess(m); err != nil {
		return err
	}
	waitFor(ctx, "file system mounted at "+www, 10*time.Second, 50*time.Millisecond, func() bool {
		return isMountPoint(www) || !alive(m)
	})
	if !isMountPoint(www) {
		stop(m, 2*time.Second)
		st.RemoveProcess(m.Role)
		st.Set(func(s *State) { s.Master, s.UpSeconds = LoopbackMaster, time.Since(start).Seconds() })
		o.printf("\nthe file system is up (master %s, three chunkservers: `rampart info --master %s`),\n"+
			"but this user cannot mount it with FUSE here, so there is no site to serve:\n%s\n"+
			"`rampart demo down --dir %s` removes it.\n", LoopbackMaster, LoopbackMaster, indentString(tail(m.Log, 2)), o.Dir)
		return nil
	}
	if err := st.AddMount(www); err != nil {
		return err
	}
	index := IndexHTML(st.Started)
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(index), 0o644); err != nil {
		return fmt.Errorf("demo: write index.html: %w", err)
	}
	w, err := startDaemon("web rampart", "", []string{o.Bin, "demo", "web", "--root", www, "--listen", LoopbackWeb},
		filepath.Join(dir, "web.log"))
	if err != nil {
		return err
	}
	if err := st.AddProcess(w); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(index))
	site := "http://" + LoopbackWeb + "/"
	st.Set(func(s *State) {
		s.Site, s.Index, s.Master, s.WebServer = site, hex.EncodeToString(sum[:]), LoopbackMaster, "rampart"
	})
	if err := waitFor(ctx, "site answering at "+site, 10*time.Second, 100*time.Millisecond, func() bool {
		got, err := fetch(ctx, http.DefaultClient, site)
		return err == nil && got == st.Index
	}); err != nil {
		return fmt.Errorf("%w\n%s", err, tail(w.Log, 10))
	}
	st.Set(func(s *State) { s.UpSeconds = time.Since(start).Seconds() })
	o.printf("\n== one process on loopback (%s)\n", dir)
	o.printf("  master %s, three chunkservers, every file in two copies\n", LoopbackMaster)
	if r, err := dfsDF(ctx, o.Bin, LoopbackMaster, www); err == nil {
		o.printf("  df -h:\n")
		FormatDF(indent(o.Out), []DFRow{r})
	}
	o.printf("  web console: http://%s/ (metrics: http://%s/metrics)\n", LoopbackConsole, LoopbackConsole)
	o.printf("  site: %s (rampart's static file server, root %s)\n", site, www)
	o.printf("\nup in %.1f s. `rampart demo down --dir %s` removes it.\n", st.UpSeconds, o.Dir)
	return nil
}

func indentString(s string) string {
	var b strings.Builder
	indent(&b).Write([]byte(s))
	return b.String()
}
