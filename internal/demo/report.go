package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// BlockNode is one line of an lsblk-style tree.
type BlockNode struct {
	Name, Type, Mount string
	Size              int64
	Children          []BlockNode
}

// FormatLsblk prints nodes as lsblk does: NAME (with ├─ └─ branches), SIZE, TYPE,
// MOUNTPOINTS.
func FormatLsblk(w io.Writer, nodes []BlockNode) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tTYPE\tMOUNTPOINTS")
	var walk func(n BlockNode, prefix, branch string)
	walk = func(n BlockNode, prefix, branch string) {
		fmt.Fprintf(tw, "%s%s%s\t%s\t%s\t%s\n", prefix, branch, n.Name, humanSize(n.Size), n.Type, n.Mount)
		next := prefix
		switch branch {
		case "├─":
			next += "│ "
		case "└─":
			next += "  "
		}
		for i, c := range n.Children {
			b := "├─"
			if i == len(n.Children)-1 {
				b = "└─"
			}
			walk(c, next, b)
		}
	}
	for _, n := range nodes {
		walk(n, "", "")
	}
	tw.Flush()
}

// DFRow is one file system of a df -h table.
type DFRow struct {
	FS, Mount         string
	Size, Used, Avail int64
}

// FormatDF prints rows as df -h does.
func FormatDF(w io.Writer, rows []DFRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Filesystem\tSize\tUsed\tAvail\tUse%\tMounted on")
	for _, r := range rows {
		pct := "-"
		if r.Used+r.Avail > 0 {
			// df rounds the percentage up.
			pct = fmt.Sprintf("%d%%", (r.Used*100+r.Used+r.Avail-1)/(r.Used+r.Avail))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.FS, humanSize(r.Size), humanSize(r.Used), humanSize(r.Avail), pct, r.Mount)
	}
	tw.Flush()
}

// humanSize is df -h's and lsblk's size: 1024-based, one decimal below 10.
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d", n)
	}
	f := float64(n)
	suffixes := "KMGTPE"
	i := -1
	for f >= 1024 && i < len(suffixes)-1 {
		f /= 1024
		i++
	}
	if f < 10 {
		return fmt.Sprintf("%.1f%c", f, suffixes[i])
	}
	return fmt.Sprintf("%.0f%c", f, suffixes[i])
}

// statDF measures a mounted file system.
func statDF(fs, mount string) (DFRow, error) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(mount, &s); err != nil {
		return DFRow{}, fmt.Errorf("statfs %s: %w", mount, err)
	}
	bs := int64(s.Bsize)
	return DFRow{FS: fs, Mount: mount, Size: int64(s.Blocks) * bs,
		Used: int64(s.Blocks-s.Bfree) * bs, Avail: int64(s.Bavail) * bs}, nil
}

// dfsDF measures the file system's mount; where the mount reports no size (statfs
// of zero blocks), the master's space figures stand in.
func dfsDF(ctx context.Context, bin, master, mount string) (DFRow, error) {
	r, err := statDF("rampart:"+master, mount)
	if err != nil || r.Size > 0 {
		return r, err
	}
	info, err := dfsInfo(ctx, bin, master)
	if err != nil {
		return r, nil
	}
	r.Size, r.Avail = int64(info.Space.Total), int64(info.Space.Free)
	r.Used = r.Size - r.Avail
	return r, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Report prints, per host, what the demo built: lsblk, multipath -ll and df -h
// equivalents, the site's URL and how to get a shell there.
func Report(ctx context.Context, w io.Writer, t Topology, st *State) {
	shell := func(h string) {
		ns := NSPrefix + h
		fmt.Fprintf(w, "  shell: nsenter --net=/var/run/netns/%s bash   (or: ip netns exec %s bash)\n", ns, ns)
	}
	addrs := func(h Host) {
		var as []string
		for _, l := range h.Links {
			as = append(as, l.Dev+" "+l.Addr)
		}
		fmt.Fprintf(w, "  addresses: %s\n", strings.Join(as, ", "))
	}
	hosts := Hosts()
	lunSize := map[[2]int]int64{} // by chunk host and LUN
	for i := 1; i <= Chunks; i++ {
		for l := 0; l < LUNs; l++ {
			lunSize[[2]int{i, l}] = fileSize(t.LUNFile(i, l))
		}
	}

	h := hosts[0]
	fmt.Fprintf(w, "== storage (%s)\n", h.NS())
	addrs(h)
	shell(h.Name)
	var disks []BlockNode
	var mdstat []string
	inArray := map[string]bool{}
	for a := 0; a < Chunks; a++ {
		md := BlockNode{Name: fmt.Sprintf("md%d", a), Type: "raid5"}
		for l := 0; l < LUNs; l++ {
			md.Children = append(md.Children, BlockNode{Name: fmt.Sprintf("md%dp%d", a, l+1), Size: lunSize[[2]int{a + 1, l}],
				Type: "part", Mount: fmt.Sprintf("LUN %d of %s", l, TargetIQN(a+1))})
		}
		members := t.ArrayMembers(a)
		if rs, err := raidStatus(ctx, t.Bin, members); err == nil {
			md.Size = rs.SizeBytes
			members = rs.memberNames()
			mdstat = append(mdstat, strings.TrimRight(rs.Mdstat, "\n"))
		}
		for _, m := range members {
			inArray[m] = true
			disks = append(disks, BlockNode{Name: filepath.Base(m), Size: fileSize(m), Type: "file", Children: []BlockNode{md}})
		}
	}
	others, _ := filepath.Glob(filepath.Join(t.Dir, "storage", "*.img"))
	for _, f := range others {
		if !inArray[f] {
			what := "(not in an array)"
			if strings.HasPrefix(filepath.Base(f), "spare") {
				what = "(spare)"
			}
			disks = append(disks, BlockNode{Name: filepath.Base(f), Size: fileSize(f), Type: "file", Mount: what})
		}
	}
	FormatLsblk(indent(w), disks)
	if len(mdstat) > 0 {
		fmt.Fprintln(w, "  rampart raid status (like /proc/mdstat):")
		for _, m := range mdstat {
			fmt.Fprintln(indent(w), m)
		}
	}
	fmt.Fprintf(w, "  targets (%s):\n", t.TargetConfigPath())
	for i := 1; i <= Chunks; i++ {
		var luns []string
		for l := 0; l < LUNs; l++ {
			luns = append(luns, fmt.Sprintf("LUN %d = md%dp%d", l, i-1, l+1))
		}
		fmt.Fprintf(w, "    %s  %s  portals %s:%d (tpg 1), %s:%d (tpg 2)  ACL %s\n",
			TargetIQN(i), strings.Join(luns, ", "), StorageAddr(1), PortISCSI, StorageAddr(2), PortISCSI, InitiatorIQN(i))
	}

	for i := 1; i <= Chunks; i++ {
		h := hosts[i]
		fmt.Fprintf(w, "\n== %s (%s)\n", h.Name, h.NS())
		addrs(h)
		shell(h.Name)
		var maps []BlockNode
		var df []DFRow
		for l := 0; l < LUNs; l++ {
			loop := ""
			for _, lp := range st.Loops {
				if lp.File == t.LUNFile(i, l) {
					loop = lp.Dev
				}
			}
			size := lunSize[[2]int{i, l}]
			maps = append(maps, BlockNode{Name: MapName(l), Size: size, Type: "mpath", Mount: t.LUNFile(i, l),
				Children: []BlockNode{{Name: filepath.Base(loop), Size: size, Type: "loop", Mount: t.DataDir(i, l)}}})
			if r, err := statDF(loop, t.DataDir(i, l)); err == nil {
				df = append(df, r)
			}
		}
		FormatLsblk(indent(w), maps)
		fmt.Fprintf(w, "  multipath -ll (rampart multipath status --status-dir %s):\n", t.StatusDir(i))
		out, _ := exec.CommandContext(ctx, t.Bin, "multipath", "status", "--status-dir", t.StatusDir(i)).CombinedOutput()
		io.WriteString(indent(w), string(out))
		if len(df) > 0 {
			fmt.Fprintln(w, "  df -h:")
			FormatDF(indent(w), df)
		}
		fmt.Fprintf(w, "  chunkserver: %s:%d, data folders %s\n", ChunkServiceAddr(i), PortChunkserver, strings.Join(t.DataDirs(i), ", "))
	}

	h = hosts[Chunks+1]
	fmt.Fprintf(w, "\n== master (%s)\n", h.NS())
	addrs(h)
	shell(h.Name)
	fmt.Fprintf(w, "  rampart info --master %s:\n", MasterClientAddr())
	out, _ := exec.CommandContext(ctx, t.Bin, "info", "--master", MasterClientAddr()).CombinedOutput()
	io.WriteString(indent(w), string(out))
	fmt.Fprintf(w, "  web console: %s (metrics: %smetrics)\n", ConsoleURL(), ConsoleURL())

	h = hosts[Chunks+2]
	fmt.Fprintf(w, "\n== web (%s)\n", h.NS())
	addrs(h)
	shell(h.Name)
	if r, err := dfsDF(ctx, t.Bin, MasterClientAddr(), t.WebMount()); err == nil {
		fmt.Fprintln(w, "  df -h:")
		FormatDF(indent(w), []DFRow{r})
	}
	fmt.Fprintf(w, "  site: %s (%s, root %s); from this machine: curl %s\n", st.Site, st.WebServer, t.WebMount(), st.Site)
}

// indent prefixes every line written with four spaces.
func indent(w io.Writer) io.Writer { return &indenter{w: w, bol: true} }

type indenter struct {
	w   io.Writer
	bol bool
}

func (in *indenter) Write(p []byte) (int, error) {
	var b strings.Builder
	for _, c := range string(p) {
		if in.bol {
			b.WriteString("    ")
		}
		b.WriteRune(c)
		in.bol = c == '\n'
	}
	_, err := io.WriteString(in.w, b.String())
	return len(p), err
}

// Status prints the state of a running demo (for `rampart demo status`).
func Status(ctx context.Context, o Options) error {
	st, err := LoadState(o.Dir)
	if err != nil {
		return fmt.Errorf("demo: no demo in %s (start one with `rampart demo`): %w", o.Dir, err)
	}
	if st.Mode != "netns" {
		b, _ := json.MarshalIndent(st, "", "  ")
		o.printf("%s\n", b)
		return nil
	}
	o.printf("demo in %s, up since %s (%.1f s to build)\n\n", o.Dir, st.Started.Format(time.RFC3339), st.UpSeconds)
	Report(ctx, o.Out, o.topo(), st)
	return nil
}
