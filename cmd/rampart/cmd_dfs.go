package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/dfs/chunkserver"
	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/fusefs"
	"github.com/rampart-storage/rampart/internal/dfs/local"
	"github.com/rampart-storage/rampart/internal/dfs/master"
	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
	"github.com/rampart-storage/rampart/internal/units"
	"github.com/rampart-storage/rampart/internal/web"
)

// addDFSCommands adds the distributed file system's commands: master,
// chunkserver, server (all roles in one process), mount, info and the fs
// tools (getgoal, setgoal, fileinfo).
func addDFSCommands(root *cobra.Command, g *globalOptions) {
	root.AddCommand(newMasterCmd(g), newChunkserverCmd(g), newDFSServerCmd(g), newDFSInfoCmd(g), newMountCmd(g), newFSCmd(g))
}

type masterOptions struct {
	dir      string
	listen   string // clients
	csListen string // chunkservers
	metaSync string
	http     string // web console and /metrics; "" disables
	httpSet  bool   // --http was given
	nice     int
}

func newMasterCmd(g *globalOptions) *cobra.Command {
	o := &masterOptions{}
	cmd := &cobra.Command{
		Use:   "master --dir DIR [--listen ADDR] [--http ADDR]",
		Short: "Run the DFS master (namespace and chunk map; clients :9421, chunkservers :9420, web console :9425)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.httpSet = cmd.Flags().Changed("http")
			return runMaster(cmd.Context(), g, o)
		},
	}
	cmd.Flags().StringVar(&o.dir, "dir", "", "metadata directory (required)")
	cmd.Flags().StringVar(&o.listen, "listen", master.DefaultClientListen, "address for clients")
	cmd.Flags().StringVar(&o.csListen, "cs-listen", master.DefaultChunkserverListen, "address for chunkservers")
	cmd.Flags().StringVar(&o.http, "http", web.DefaultListen, `address of the web console and /metrics ("" disables)`)
	addMetaSyncFlags(cmd, &o.metaSync)
	addNiceFlag(cmd, &o.nice)
	cmd.MarkFlagRequired("dir")
	return cmd
}

// addMetaSyncFlags adds --meta-sync (see docs/decisions/2026-11-27-dfs-metadata-sync.md).
func addMetaSyncFlags(cmd *cobra.Command, mode *string) {
	cmd.Flags().StringVar(mode, "meta-sync", "interval", "when metadata changes reach the disk: "+
		"interval (written to the log before the reply, so kill -9 loses nothing; fsynced every 50ms) or "+
		"always (fsynced before the reply: also survives power loss, slower)")
}

func metaSyncOptions(mode string) (meta.Options, error) {
	m, err := meta.ParseSyncMode(mode)
	if err != nil {
		return meta.Options{}, fmt.Errorf("--meta-sync: %w: %w", errUsage, err)
	}
	return meta.Options{Sync: m}, nil
}

func runMaster(ctx context.Context, g *globalOptions, o *masterOptions) error {
	if err := applyNice(g.logger(), o.nice); err != nil {
		return err
	}
	sync, err := metaSyncOptions(o.metaSync)
	if err != nil {
		return err
	}
	m, err := master.New(master.Config{Dir: o.dir, ClientListen: o.listen, ChunkserverListen: o.csListen, Log: g.logger(), MetaSync: sync})
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Start(ctx); err != nil {
		return err
	}
	stop, err := startWeb(ctx, g, o.http, o.httpSet, m)
	if err != nil {
		return err
	}
	defer stop()
	<-ctx.Done()
	return nil
}

// startWeb serves the web console and /metrics of m on addr (nothing if addr
// is empty); the returned function stops it. If the default address
// (explicit false) is taken, for instance by a second single-machine DFS or
// by MooseFS's mfscgiserv, the DFS runs without its console and says so; an
// address given with --http must work.
func startWeb(ctx context.Context, g *globalOptions, addr string, explicit bool, m *master.Master) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	log := g.logger().With("role", "web")
	s, err := web.New(web.Config{Listen: addr, Source: m, Log: log})
	if err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		if !explicit && errors.Is(err, syscall.EADDRINUSE) {
			log.Warn("web console not started: its default address is in use; choose one with --http", "addr", addr)
			return func() {}, nil
		}
		return nil, fmt.Errorf("--http: %w", err)
	}
	return func() { s.Close() }, nil
}

type chunkserverOptions struct {
	data      string
	master    string
	listen    string
	advertise string
	nice      int
}

func newChunkserverCmd(g *globalOptions) *cobra.Command {
	o := &chunkserverOptions{}
	cmd := &cobra.Command{
		Use:   "chunkserver --data DIR[,DIR...] --master HOST:9420 [--listen ADDR:PORT]",
		Short: "Run a DFS chunkserver storing chunks in the data folders",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runChunkserver(cmd.Context(), g, o)
		},
	}
	cmd.Flags().StringVar(&o.data, "data", "", "comma-separated data folders (required)")
	cmd.Flags().StringVar(&o.master, "master", "", "master's chunkserver address, HOST:9420 (required)")
	cmd.Flags().StringVar(&o.listen, "listen", chunkserver.DefaultListen, "address for clients and peers")
	cmd.Flags().StringVar(&o.advertise, "advertise", "", "address clients use to reach this chunkserver")
	addNiceFlag(cmd, &o.nice)
	cmd.MarkFlagRequired("data")
	cmd.MarkFlagRequired("master")
	return cmd
}

func runChunkserver(ctx context.Context, g *globalOptions, o *chunkserverOptions) error {
	if err := applyNice(g.logger(), o.nice); err != nil {
		return err
	}
	s, err := chunkserver.New(chunkserver.Config{Data: strings.Split(o.data, ","), Master: o.master,
		Listen: o.listen, Advertise: o.advertise, Log: g.logger()})
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

type dfsServerOptions struct {
	dir          string
	listen       string
	chunkservers int
	metaSync     string
	http         string // web console; "" disables
	httpSet      bool   // --http was given (else: the --listen host, port 9425)
	nice         int
}

func newDFSServerCmd(g *globalOptions) *cobra.Command {
	o := &dfsServerOptions{}
	cmd := &cobra.Command{
		Use:   "server --dir DIR [--listen ADDR] [--http ADDR]",
		Short: "Run a master and three chunkservers in one process (single-machine DFS)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.httpSet = cmd.Flags().Changed("http")
			return runDFSServer(cmd.Context(), g, o)
		},
	}
	cmd.Flags().StringVar(&o.dir, "dir", "", "data directory (required)")
	cmd.Flags().StringVar(&o.listen, "listen", "127.0.0.1:9421", "master's client address; chunkservers register on the port below it")
	cmd.Flags().IntVar(&o.chunkservers, "chunkservers", 3, "number of chunkservers")
	cmd.Flags().StringVar(&o.http, "http", "", `address of the web console and /metrics (default: the --listen host, port `+web.DefaultPort+`; "" disables)`)
	addMetaSyncFlags(cmd, &o.metaSync)
	addNiceFlag(cmd, &o.nice)
	cmd.MarkFlagRequired("dir")
	return cmd
}

func runDFSServer(ctx context.Context, g *globalOptions, o *dfsServerOptions) error {
	host, port, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w: %w", o.listen, errUsage, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 2 || p > 65535 {
		return fmt.Errorf("--listen %q: port: %w", o.listen, errUsage)
	}
	sync, err := metaSyncOptions(o.metaSync)
	if err != nil {
		return err
	}
	log := g.logger()
	if err := applyNice(log, o.nice); err != nil {
		return err
	}
	cl, err := local.Start(ctx, local.Config{Dir: o.dir, Host: host, ClientPort: p, CSPort: p - 1,
		Chunkservers: o.chunkservers, Log: log, MetaSync: sync})
	if err != nil {
		return err
	}
	defer cl.Close()
	if !o.httpSet {
		o.http = net.JoinHostPort(host, web.DefaultPort)
	}
	stop, err := startWeb(ctx, g, o.http, o.httpSet, cl.Master)
	if err != nil {
		return err
	}
	defer stop()
	log.Info("dfs server ready", "master", cl.Master.ClientAddr(), "chunkservers", len(cl.Chunkservers))
	<-ctx.Done()
	return nil
}

type dfsInfoOptions struct {
	master string
	json   bool
}

func newDFSInfoCmd(g *globalOptions) *cobra.Command {
	o := &dfsInfoOptions{}
	cmd := &cobra.Command{
		Use:   "info --master HOST:9421 [--json]",
		Short: "Show DFS chunkservers, space and chunk replication state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDFSInfo(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.master, "master", "127.0.0.1:9421", "master's client address")
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return cmd
}

func runDFSInfo(ctx context.Context, w io.Writer, o *dfsInfoOptions) error {
	c, err := client.Dial(ctx, o.master)
	if err != nil {
		return err
	}
	defer c.Close()
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("info from master %s: %w", o.master, err)
	}
	if o.json {
		return printJSON(w, info)
	}
	fmt.Fprintf(w, "space: %s free of %s\n", units.FormatSize(int64(info.Space.Free)), units.FormatSize(int64(info.Space.Total)))
	fmt.Fprintf(w, "chunkservers: %d\n", len(info.Servers))
	for _, s := range info.Servers {
		state := "live"
		if !s.Live {
			state = "LOST"
		}
		fmt.Fprintf(w, "  %-24s %-4s %s free of %s\n", s.Addr, state, units.FormatSize(int64(s.Free)), units.FormatSize(int64(s.Total)))
	}
	ch := info.Chunks
	fmt.Fprintf(w, "chunks: %d (%d copies): %d ok, %d under goal, %d over goal, %d missing\n",
		ch.Total, ch.Copies, ch.OK, ch.Undergoal, ch.Overgoal, ch.Missing)
	fmt.Fprintf(w, "copies: %d valid, %d on lost servers, %d stale (being deleted), %d bad (dropped)\n",
		ch.States.Valid, ch.States.Lost, ch.States.Stale, ch.States.Bad)
	return nil
}

type mountOptions struct {
	mountpoint string
	master     string
	debug      bool
	nice       int
}

func newMountCmd(g *globalOptions) *cobra.Command {
	o := &mountOptions{}
	cmd := &cobra.Command{
		Use:   "mount MOUNTPOINT --master HOST:9421",
		Short: "Mount the DFS with FUSE (foreground until unmounted or signalled)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.mountpoint = args[0]
			return runMount(cmd.Context(), g, o)
		},
	}
	cmd.Flags().StringVar(&o.master, "master", "127.0.0.1:9421", "master's client address")
	cmd.Flags().BoolVar(&o.debug, "fuse-debug", false, "log every FUSE request")
	addNiceFlag(cmd, &o.nice)
	return cmd
}

func runMount(ctx context.Context, g *globalOptions, o *mountOptions) error {
	if err := applyNice(g.logger(), o.nice); err != nil {
		return err
	}
	c, err := client.Dial(ctx, o.master)
	if err != nil {
		return err
	}
	defer c.Close()
	srv, err := fusefs.Mount(o.mountpoint, c, o.debug)
	if err != nil {
		return fmt.Errorf("mount %s: %w", o.mountpoint, err)
	}
	g.logger().Info("dfs mounted", "mountpoint", o.mountpoint, "master", o.master)
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if err := srv.Unmount(); err != nil {
			return fmt.Errorf("unmount %s: %w", o.mountpoint, err)
		}
		<-done
	}
	return nil
}

type fsOptions struct {
	master    string
	json      bool
	recursive bool
}

// newFSCmd groups the MooseFS-like tools. Paths are DFS paths from the root
// of the file system (not paths under a mount point).
func newFSCmd(g *globalOptions) *cobra.Command {
	o := &fsOptions{}
	cmd := &cobra.Command{Use: "fs", Short: "DFS file tools: getgoal, setgoal, fileinfo, checkfile, dirinfo (paths from the DFS root)"}
	cmd.PersistentFlags().StringVar(&o.master, "master", "127.0.0.1:9421", "master's client address")
	cmd.PersistentFlags().BoolVar(&o.json, "json", false, "print JSON")
	get := &cobra.Command{
		Use: "getgoal PATH...", Short: "Show the goal (number of copies) of files", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFSGoal(cmd.Context(), cmd.OutOrStdout(), o, args, 0)
		},
	}
	set := &cobra.Command{
		Use: "setgoal [-r] N PATH...", Short: "Set the goal of files (and, with -r, everything below directories)",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 || n > 16 {
				return fmt.Errorf("goal %q: want 1..16: %w", args[0], errUsage)
			}
			return runFSGoal(cmd.Context(), cmd.OutOrStdout(), o, args[1:], n)
		},
	}
	set.Flags().BoolVarP(&o.recursive, "recursive", "r", false, "apply to everything below directories")
	info := &cobra.Command{
		Use: "fileinfo PATH...", Short: "Show each chunk of files with its version and copies", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFSFileinfo(cmd.Context(), cmd.OutOrStdout(), o, args)
		},
	}
	cmd.AddCommand(get, set, info)
	addFSToolCommands(cmd, o)
	return cmd
}

type goalResult struct {
	Path string `json:"path"`
	Goal int    `json:"goal"`
}

func runFSGoal(ctx context.Context, w io.Writer, o *fsOptions, paths []string, goal int) error {
	c, err := client.Dial(ctx, o.master)
	if err != nil {
		return err
	}
	defer c.Close()
	var out []goalResult
	var walk func(path string, a *proto.Attr) error
	walk = func(path string, a *proto.Attr) error {
		if goal > 0 {
			if a, err = c.Setattr(ctx, a.Ino, client.SetAttr{Valid: proto.SetGoal, Mode: uint32(goal)}); err != nil {
				return fmt.Errorf("setgoal %s: %w", path, err)
			}
		}
		out = append(out, goalResult{Path: path, Goal: int(a.Goal)})
		if goal == 0 || !o.recursive || !a.IsDir() {
			return nil
		}
		ents, err := c.Readdir(ctx, a.Ino)
		if err != nil {
			return fmt.Errorf("readdir %s: %w", path, err)
		}
		for _, e := range ents {
			ca, err := c.Getattr(ctx, e.Ino)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", path, e.Name, err)
			}
			if err := walk(path+"/"+e.Name, ca); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range paths {
		a, err := c.Resolve(ctx, p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if err := walk(p, a); err != nil {
			return err
		}
	}
	if o.json {
		return printJSON(w, out)
	}
	for _, r := range out {
		fmt.Fprintf(w, "%s: %d\n", r.Path, r.Goal)
	}
	return nil
}

type chunkInfo struct {
	Index   int      `json:"index"`
	ID      string   `json:"id"`
	Version uint32   `json:"version"`
	Copies  []string `json:"copies"`
}

type fileInfo struct {
	Path   string      `json:"path"`
	Size   uint64      `json:"size"`
	Goal   int         `json:"goal"`
	Chunks []chunkInfo `json:"chunks"`
}

func runFSFileinfo(ctx context.Context, w io.Writer, o *fsOptions, paths []string) error {
	c, err := client.Dial(ctx, o.master)
	if err != nil {
		return err
	}
	defer c.Close()
	var out []fileInfo
	for _, p := range paths {
		a, err := c.Resolve(ctx, p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		fi := fileInfo{Path: p, Size: a.Size, Goal: int(a.Goal)}
		for idx := uint32(0); uint64(idx)*proto.ChunkSize < a.Size; idx++ {
			loc, err := c.ChunkLocation(ctx, a.Ino, idx)
			if err != nil {
				return fmt.Errorf("%s chunk %d: %w", p, idx, err)
			}
			fi.Chunks = append(fi.Chunks, chunkInfo{Index: int(idx), ID: fmt.Sprintf("%016X", loc.ID), Version: loc.Version, Copies: loc.Servers})
		}
		out = append(out, fi)
	}
	if o.json {
		return printJSON(w, out)
	}
	for _, fi := range out {
		fmt.Fprintf(w, "%s: size %d, goal %d\n", fi.Path, fi.Size, fi.Goal)
		for _, ch := range fi.Chunks {
			fmt.Fprintf(w, "\tchunk %d: %s_%08X / (id:%s ver:%d)\n", ch.Index, ch.ID, ch.Version, ch.ID, ch.Version)
			if len(ch.Copies) == 0 {
				fmt.Fprintf(w, "\t\tno valid copies !!!\n")
			}
			for i, cp := range ch.Copies {
				fmt.Fprintf(w, "\t\tcopy %d: %s\n", i+1, cp)
			}
		}
	}
	return nil
}
