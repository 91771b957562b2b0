package demo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// demoSubdirs are what the demo creates in its directory; purging removes only these,
// never the directory's other contents.
var demoSubdirs = []string{"storage", "master", "web", "single", "drill",
	ChunkName(1), ChunkName(2), ChunkName(3)}

// LabOwnerFile names the demo directory whose lab the namespaces are. Namespace names
// and addresses are fixed, so a machine holds one lab at a time; a demo in another
// directory must not take it down.
var LabOwnerFile = "/run/rampart/demo-lab"

// labOwner is the directory of the demo that owns the namespaces ("" if none).
func labOwner() string {
	b, err := os.ReadFile(LabOwnerFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// ownsLab reports whether the demo in dir may touch the namespaces.
func ownsLab(dir string) bool {
	o := labOwner()
	return o == "" || o == filepath.Clean(dir)
}

// claimLab records dir as the owner of the namespaces.
func claimLab(dir string) error {
	if err := os.MkdirAll(filepath.Dir(LabOwnerFile), 0o755); err != nil {
		return err
	}
	return os.WriteFile(LabOwnerFile, []byte(filepath.Clean(dir)+"\n"), 0o644)
}

// Leftovers is what remains of a demo on this machine.
type Leftovers struct {
	Namespaces []string
	Mounts     []string
	Loops      []Loop
	Processes  []Process // recorded in the state file and still running
	HostLink   bool
}

// Empty reports whether nothing is left.
func (l Leftovers) Empty() bool {
	return len(l.Namespaces) == 0 && len(l.Mounts) == 0 && len(l.Loops) == 0 && len(l.Processes) == 0 && !l.HostLink
}

func (l Leftovers) String() string {
	var parts []string
	if len(l.Namespaces) > 0 {
		parts = append(parts, "namespaces "+strings.Join(l.Namespaces, " "))
	}
	if len(l.Mounts) > 0 {
		parts = append(parts, "mounts "+strings.Join(l.Mounts, " "))
	}
	for _, lp := range l.Loops {
		parts = append(parts, "loop "+lp.Dev+" over "+lp.File)
	}
	for _, p := range l.Processes {
		parts = append(parts, fmt.Sprintf("process %d (%s)", p.Pid, p.Role))
	}
	if l.HostLink {
		parts = append(parts, "link "+HostLink)
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, "; ")
}

// FindLeftovers looks for what a demo in dir left: its namespaces, mounts and loop
// devices below dir, and the processes its state file lists.
func FindLeftovers(dir string) Leftovers {
	var l Leftovers
	// Only root makes (and can remove) namespaces, and only the owner's are its own.
	root := os.Geteuid() == 0 && ownsLab(dir)
	if root {
		l.Namespaces = namespacesWithPrefix(NSPrefix)
	}
	l.Mounts, _ = mountsUnder(dir)
	l.Loops = loopsOver(dir)
	if st, err := LoadState(dir); err == nil {
		for _, p := range st.Processes {
			if alive(p) {
				l.Processes = append(l.Processes, p)
			}
		}
	}
	_, err := os.Stat("/sys/class/net/" + HostLink)
	l.HostLink = root && err == nil
	return l
}

// cleanLeftovers removes an earlier demo before a new one is built.
func cleanLeftovers(ctx context.Context, o Options) error {
	if owner := labOwner(); os.Geteuid() == 0 && !ownsLab(o.Dir) && len(namespacesWithPrefix(NSPrefix)) > 0 {
		return fmt.Errorf("demo: the lab's namespaces belong to the demo in %s: run `rampart demo down --dir %s` first", owner, owner)
	}
	l := FindLeftovers(o.Dir)
	_, err := os.Stat(StatePath(o.Dir))
	if l.Empty() && err != nil {
		return nil
	}
	o.printf("cleaning up an earlier demo first: %s\n", l)
	return Down(ctx, o, true)
}

// Down removes everything the demo created: processes, mounts, loop devices and
// namespaces; with purge also its files. It fails if something is left.
func Down(ctx context.Context, o Options, purge bool) error {
	st, err := LoadState(o.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		o.printf("state file unreadable (%v); removing what can be found\n", err)
	}
	var procs []Process
	if st != nil {
		procs = st.Processes
	}
	byRole := func(prefixes ...string) []Process {
		var out []Process
		for _, p := range procs {
			for _, pre := range prefixes {
				if strings.HasPrefix(p.Role, pre) {
					out = append(out, p)
				}
			}
		}
		return out
	}
	stopAll := func(ps []Process) {
		for _, p := range ps {
			if alive(p) {
				killed := stop(p, 5*time.Second)
				how := "stopped"
				if killed {
					how = "killed (did not stop on SIGTERM)"
				}
				o.printf("  %s: pid %d %s\n", p.Role, p.Pid, how)
			}
		}
	}
	// Top of the stack first: the site, the file system's clients and servers.
	stopAll(byRole("web ", "mount ", "server", "chunkserver "))
	// Then the XFS on each LUN and the loop devices under them.
	mounts, _ := mountsUnder(o.Dir)
	for _, m := range mounts {
		if isAttachDir(m) {
			continue // an attach's own FUSE mount, removed by stopping it
		}
		unmount(ctx, o, m)
	}
	loops := loopsOver(o.Dir)
	if st != nil {
		for _, lp := range st.Loops {
			if !slices.Contains(loops, lp) && loopBacking(lp.Dev) == lp.File {
				loops = append(loops, lp)
			}
		}
	}
	for _, lp := range loops {
		if _, err := run(ctx, "losetup", "-d", lp.Dev); err != nil {
			o.printf("  %v\n", err)
		} else {
			o.printf("  loop device %s detached\n", lp.Dev)
		}
	}
	// Then the block layer, initiators before the target; and the master.
	stopAll(byRole("attach "))
	stopAll(procs)
	mounts, _ = mountsUnder(o.Dir)
	for _, m := range mounts {
		unmount(ctx, o, m)
	}
	// Processes nobody recorded (a demo killed before it saved) still run in the
	// demo's namespaces: they are the demo's own, found by namespace.
	if os.Geteuid() != 0 || !ownsLab(o.Dir) {
		if os.Geteuid() == 0 && len(namespacesWithPrefix(NSPrefix)) > 0 {
			o.printf("  the namespaces belong to the demo in %s: left alone\n", labOwner())
		}
		return finishDown(o, st, procs, purge)
	}
	for _, ns := range namespacesWithPrefix(NSPrefix) {
		for _, pid := range pidsInNS(ns) {
			o.printf("  unrecorded process %d in %s killed\n", pid, ns)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, ns := range namespacesWithPrefix(NSPrefix) {
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil {
			o.printf("  %v\n", err)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + HostLink); err == nil {
		run(ctx, "ip", "link", "del", HostLink)
	}
	os.Remove(LabOwnerFile)
	return finishDown(o, st, procs, purge)
}

// finishDown removes the state file (and with purge the demo's files) and checks
// that nothing is left.
func finishDown(o Options, st *State, procs []Process, purge bool) error {
	os.Remove(StatePath(o.Dir))
	if purge {
		for _, d := range demoSubdirs {
			if err := os.RemoveAll(filepath.Join(o.Dir, d)); err != nil {
				o.printf("  remove %s: %v\n", d, err)
			}
		}
	}
	// What remains, without counting the processes just removed from the state file.
	l := FindLeftovers(o.Dir)
	for _, p := range procs {
		if alive(p) {
			l.Processes = append(l.Processes, p)
		}
	}
	if !l.Empty() {
		return fmt.Errorf("demo down: left behind: %s", l)
	}
	o.printf("demo down: nothing left (namespaces, mounts, loop devices, processes)\n")
	return nil
}

// isAttachDir reports whether mount point m is an attach's FUSE mount (a chunk host's
// lun0, lun1; lun in demos before two LUNs per host).
func isAttachDir(m string) bool {
	b := filepath.Base(m)
	rest, ok := strings.CutPrefix(b, "lun")
	return ok && strings.Trim(rest, "0123456789") == ""
}

// unmount unmounts m, lazily if it stays busy.
func unmount(ctx context.Context, o Options, m string) {
	for i := 0; i < 20; i++ {
		if _, err := run(ctx, "umount", m); err == nil || !isMountPoint(m) {
			o.printf("  %s unmounted\n", m)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := run(ctx, "umount", "-l", m); err != nil {
		o.printf("  %v\n", err)
		return
	}
	o.printf("  %s unmounted (lazily: it stayed busy)\n", m)
}

// loopBacking is the backing file of a loop device ("" if none).
func loopBacking(dev string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
}
