package main

// `rampart demo`: the seed lab's whole stack on one machine (issue 6), its failure
// drill, and its removal. The orchestration lives in internal/demo; every role it
// starts is this same binary run as a subprocess inside the host's namespace.

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/demo"
)

type demoOptions struct {
	dir   string
	purge bool
	// demo web
	root, listen string
}

// options resolves the demo directory (a per-user one when not root and no --dir)
// and the binary the roles run.
func (o *demoOptions) options(cmd *cobra.Command, g *globalOptions) (demo.Options, error) {
	bin, err := os.Executable()
	if err != nil {
		return demo.Options{}, fmt.Errorf("demo: this binary's path: %w", err)
	}
	dir := o.dir
	if !cmd.Flags().Changed("dir") && os.Geteuid() != 0 {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("rampart-demo-%d", os.Geteuid()))
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return demo.Options{}, err
	}
	return demo.Options{Dir: dir, Bin: bin, Out: cmd.OutOrStdout(), Verbose: g.verbose}, nil
}

func newDemoCmd(g *globalOptions) *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo [--dir DIR]",
		Short: "Build the seed lab on this machine: RAID, iSCSI, multipath, XFS, the DFS and a web site",
		Long: `demo builds the seed lab's highly-available stack on this machine and prints it.

As root each machine of the lab is a network namespace (rampart-storage, rampart-chunk1..3,
rampart-master, rampart-web) on two storage networks (10.3.1.0/24, 10.3.2.0/24) and a
service network (10.3.250.0/24, reachable from this machine):
  storage   nine file-backed disks, three RAID 5 arrays, three iSCSI targets, one ACL each
  chunkN    its LUN attached over both networks (multipath), XFS on it, a chunkserver
  master    the DFS master
  web       the DFS mounted, a site served from it (nginx if installed, else rampart's)
Without root it runs the file system alone on loopback in one process, and says so.

Everything it creates is listed in DIR/state.json; 'rampart demo down' removes it, and
'rampart demo' first removes what an earlier demo left. See docs/demo.md.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			do, err := o.options(cmd, g)
			if err != nil {
				return err
			}
			return demo.Up(cmd.Context(), do)
		},
	}
	cmd.PersistentFlags().StringVar(&o.dir, "dir", demo.DefaultDir, "the demo's directory (disks, mounts, logs, state)")
	drill := &cobra.Command{
		Use:   "drill",
		Short: "Rehearse the seed's failures while a client fetches and writes the site: cut a network, fail a disk, kill a chunkserver, restart the master",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			do, err := o.options(cmd, g)
			if err != nil {
				return err
			}
			return demo.Drill(cmd.Context(), do)
		},
	}
	down := &cobra.Command{
		Use:   "down [--purge]",
		Short: "Remove everything the demo created (processes, mounts, loop devices, namespaces)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			do, err := o.options(cmd, g)
			if err != nil {
				return err
			}
			return demo.Down(cmd.Context(), do, o.purge)
		},
	}
	down.Flags().BoolVar(&o.purge, "purge", false, "also delete the demo's disks, logs and metadata")
	status := &cobra.Command{
		Use:   "status",
		Short: "Print what the running demo built, per host",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			do, err := o.options(cmd, g)
			if err != nil {
				return err
			}
			return demo.Status(cmd.Context(), do)
		},
	}
	web := &cobra.Command{
		Use:    "web --root DIR --listen ADDR:PORT",
		Short:  "Serve DIR over HTTP (the demo's web host when nginx is not installed)",
		Hidden: true,
		Args:   exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demo.ServeWeb(cmd.Context(), o.root, o.listen, g.logger())
		},
	}
	web.Flags().StringVar(&o.root, "root", "", "directory to serve (required)")
	web.Flags().StringVar(&o.listen, "listen", ":80", "address to listen on")
	web.MarkFlagRequired("root")
	cmd.AddCommand(drill, down, status, web)
	return cmd
}
