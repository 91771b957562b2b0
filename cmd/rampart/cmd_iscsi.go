package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/multipath"
)

type iscsiDiscoverOptions struct {
	initiatorName, chap string
	json, record        bool
	nodeDir             string
	timeout             time.Duration
}

func newISCSICmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "iscsi", Short: "iSCSI initiator tools (like iscsiadm)",
		Long: `iSCSI initiator tools, like iscsiadm. rampart has no kernel initiator: a session lives in
the process that uses it ('rampart attach', or the one 'rampart iscsi login' starts), which
shows the LUNs as FUSE files or NBD exports and publishes its state in --status-dir.
See docs/decisions/2026-11-27-iscsi-sessions-in-processes.md.`}
	o := &iscsiDiscoverOptions{}
	d := &cobra.Command{
		Use:   "discover PORTAL",
		Short: "List the targets a portal offers (SendTargets) and record a node for each portal",
		Example: `  rampart iscsi discover 10.3.1.1
  10.3.1.1:3260,1 iqn.2024-03.org.clusterlab:storage.md0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runISCSIDiscover(cmd, args[0], o)
		},
	}
	d.Flags().StringVar(&o.initiatorName, "initiator-name", initiator.DefaultInitiatorName, "this initiator's IQN")
	d.Flags().StringVar(&o.chap, "chap", "", "discovery CHAP USER:SECRET")
	d.Flags().BoolVar(&o.json, "json", false, "print JSON")
	d.Flags().BoolVar(&o.record, "record", true, "write a node record per target portal in --node-dir (iscsiadm -m discovery)")
	d.Flags().StringVar(&o.nodeDir, "node-dir", initiator.DefaultNodeDir, "where node records are kept")
	d.Flags().DurationVar(&o.timeout, "timeout", 15*time.Second, "give up after this long")
	cmd.AddCommand(d, newISCSINodeCmd(), newISCSILoginCmd(g), newISCSILogoutCmd(), newISCSISessionCmd())
	return cmd
}

func runISCSIDiscover(cmd *cobra.Command, portal string, o *iscsiDiscoverOptions) error {
	opts := initiator.Options{Portal: portal, InitiatorName: o.initiatorName, LoginTimeout: o.timeout}
	if o.chap != "" {
		u, s, ok := strings.Cut(o.chap, ":")
		if !ok {
			return fmt.Errorf("discover: --chap wants USER:SECRET: %w", errUsage)
		}
		opts.CHAP = &initiator.CHAP{User: u, Secret: s}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	targets, err := initiator.Discover(ctx, opts)
	if err != nil {
		return err
	}
	if o.record {
		for _, t := range targets {
			for _, p := range t.Portals {
				n := initiator.NewNode(t.Name, p.Addr, p.TPGT)
				n.DiscoveryAddress = portal
				if err := initiator.WriteNode(o.nodeDir, n); err != nil {
					return fmt.Errorf("discover: record node %s at %s: %w", t.Name, p.Addr, err)
				}
			}
		}
	}
	if o.json {
		return printJSON(cmd.OutOrStdout(), targets)
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 1, ' ', 0)
	for _, t := range targets {
		for _, p := range t.Portals {
			fmt.Fprintf(w, "%s,%d\t%s\n", p.Addr, p.TPGT, t.Name)
		}
	}
	return w.Flush()
}

func newISCSINodeCmd() *cobra.Command {
	var nodeDir string
	c := &cobra.Command{
		Use:   "node",
		Short: "List the node records (iscsiadm -m node)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nodes, err := initiator.ReadNodes(nodeDir)
			if err != nil {
				return err
			}
			if len(nodes) == 0 {
				return fmt.Errorf("no records found in %s (run 'rampart iscsi discover PORTAL')", nodeDir)
			}
			for _, n := range nodes {
				fmt.Fprintf(cmd.OutOrStdout(), "%s,%d %s\n", n.Portal, n.TPGT, n.Target)
			}
			return nil
		},
	}
	c.Flags().StringVar(&nodeDir, "node-dir", initiator.DefaultNodeDir, "where node records are kept")
	return c
}

type iscsiLoginOptions struct {
	attachOptions
	target, portal string
	nodeDir        string
	lun            int
	foreground     bool
	startTimeout   time.Duration
}

func newISCSILoginCmd(g *globalOptions) *cobra.Command {
	o := &iscsiLoginOptions{}
	o.replacementTimeout = 15 * time.Second // the node record's value replaces it
	c := &cobra.Command{
		Use:   "login -T IQN [-p PORTAL] (--fuse DIR | --nbd ADDR:PORT) [flags]",
		Short: "Log in to a target through every portal of its node records and show its LUNs",
		Long: `login reads the node records of the target (written by 'rampart iscsi discover'; with -p,
only that portal, recorded if it was not), logs in through every portal, and merges the
paths to each LUN into a multipath map named from the bindings file (mpatha, ...). The
LUNs appear as NBD exports named by alias (--nbd), or, for one LUN, as a FUSE file
(--fuse). Session settings (CHAP, digests, NOP-Out and replacement timeouts) come from
the node record; the map's from the flags.

The sessions live in a process: login starts it in the background and returns once
it is logged in ('rampart iscsi session' shows it, 'rampart iscsi logout' ends it);
--foreground runs it in this process until signalled. When a process already holds
the target, login asks it instead to log in again through the portals that
'rampart iscsi logout -p' logged out (its maps take those paths back).`,
		Example: `  rampart iscsi discover 10.3.1.1
  rampart iscsi login -T iqn.2024-03.org.clusterlab:storage.md0 --nbd 127.0.0.1:10809
  Login to [iface: default, target: iqn.2024-03.org.clusterlab:storage.md0, portal: 10.3.1.1:3260,1]: successful`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if held, err := loginToHolder(cmd.OutOrStdout(), o); held || err != nil {
				return err
			}
			if o.foreground {
				return runISCSILogin(cmd.Context(), cmd.OutOrStdout(), g, o)
			}
			return startISCSILogin(cmd, o)
		},
	}
	f := c.Flags()
	f.StringVarP(&o.target, "targetname", "T", "", "the target's IQN")
	f.StringVarP(&o.portal, "portal", "p", "", "only this portal (HOST[:PORT])")
	f.StringVar(&o.nodeDir, "node-dir", initiator.DefaultNodeDir, "where node records are kept")
	f.IntVar(&o.lun, "lun", -1, "only this LUN (default: every LUN REPORT LUNS names)")
	f.BoolVar(&o.foreground, "foreground", false, "hold the sessions in this process until signalled")
	f.DurationVar(&o.startTimeout, "start-timeout", 60*time.Second, "how long the background process may take to log in")
	addMapFlags(c, &o.attachOptions)
	return c
}

// loginNodes are the node records login uses.
func loginNodes(o *iscsiLoginOptions) ([]initiator.Node, error) {
	if o.target == "" {
		return nil, fmt.Errorf("login: -T IQN is required: %w", errUsage)
	}
	all, err := initiator.ReadNodes(o.nodeDir)
	if err != nil {
		return nil, err
	}
	portal := ""
	if o.portal != "" {
		portal = initiator.NewNode(o.target, o.portal, 1).Portal
	}
	var nodes []initiator.Node
	for _, n := range all {
		if n.Target == o.target && (portal == "" || n.Portal == portal) {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 && portal != "" { // iscsiadm -m node -o new
		n := initiator.NewNode(o.target, portal, 1)
		if err := initiator.WriteNode(o.nodeDir, n); err != nil {
			return nil, fmt.Errorf("login: record node: %w", err)
		}
		nodes = append(nodes, n)
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("login: no records found for %s in %s (run 'rampart iscsi discover PORTAL', or give -p)", o.target, o.nodeDir)
	}
	return nodes, nil
}

// runISCSILogin logs in and holds the sessions until ctx ends.
func runISCSILogin(ctx context.Context, out io.Writer, g *globalOptions, o *iscsiLoginOptions) error {
	if (o.fuseDir == "") == (o.nbdAddr == "") {
		return fmt.Errorf("login: give exactly one of --fuse and --nbd: %w", errUsage)
	}
	nodes, err := loginNodes(o)
	if err != nil {
		return err
	}
	log := g.logger()
	base := initiator.Options{InitiatorName: o.initiatorName, Logger: log, LoginTimeout: 10 * time.Second}
	luns := []uint64{uint64(max(o.lun, 0))}
	if o.lun < 0 {
		luns, err = targetLUNs(ctx, nodes, base)
		if err != nil {
			return err
		}
	}
	if len(luns) > 1 && o.alias != "" {
		return fmt.Errorf("login: --alias names one LUN, the target has %d (choose one with --lun): %w", len(luns), errUsage)
	}
	var cfgs []multipath.Config
	for _, lun := range luns {
		var urls []string
		for _, n := range nodes {
			urls = append(urls, fmt.Sprintf("iscsi://%s/%s/%d", n.Portal, n.Target, lun))
		}
		cfg, err := o.mapConfig(g, urls)
		if err != nil {
			return err
		}
		// The session settings are the node record's (of the first portal: iscsiadm
		// keeps them per portal, rampart's map has one set for all its paths).
		s := nodes[0].Options(cfg.Session)
		cfg.Session = s
		cfgs = append(cfgs, cfg)
	}
	o.ready = func(sts []multipath.Status) { printLogins(out, sts) }
	return serveMaps(ctx, log, cfgs, &o.attachOptions, "iscsi login")
}

// targetLUNs asks the target for its LUNs through the first portal that answers.
func targetLUNs(ctx context.Context, nodes []initiator.Node, base initiator.Options) ([]uint64, error) {
	var errs []error
	for _, n := range nodes {
		s, err := initiator.Dial(ctx, n.Options(base))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		luns, err := initiator.ReportLUNs(ctx, s)
		s.Close()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(luns) == 0 {
			return nil, fmt.Errorf("login: target %s offers no LUN", n.Target)
		}
		return luns, nil
	}
	return nil, fmt.Errorf("login: %w", errors.Join(errs...))
}

func printLogins(out io.Writer, sts []multipath.Status) {
	seen := map[string]bool{}
	for _, st := range sts {
		for _, p := range st.Paths {
			key := p.Session.Target + " " + p.Session.Portal
			if seen[key] {
				continue
			}
			seen[key] = true
			where := fmt.Sprintf("[iface: default, target: %s, portal: %s]", p.Session.Target, portalTag(p))
			fmt.Fprintf(out, "Logging in to %s\n", where)
			if p.Session.State == initiator.StateLoggedIn {
				fmt.Fprintf(out, "Login to %s: successful\n", where)
			} else {
				fmt.Fprintf(out, "Login to %s: failed: %s (retrying in the background)\n", where, p.Session.LastError)
			}
		}
	}
}

// portalTag is PORTAL,TPGT as iscsiadm prints it; the tag is the ALUA target port group
// when the target reports one (rampart's target: the portal group tag).
func portalTag(p multipath.PathStatus) string {
	tpgt := 1
	if p.TPG != nil {
		tpgt = int(*p.TPG)
	}
	return fmt.Sprintf("%s,%d", p.Session.Portal, tpgt)
}

// startISCSILogin runs login --foreground as a background process and waits until it
// has published its maps.
func startISCSILogin(cmd *cobra.Command, o *iscsiLoginOptions) error {
	if (o.fuseDir == "") == (o.nbdAddr == "") {
		return fmt.Errorf("login: give exactly one of --fuse and --nbd: %w", errUsage)
	}
	if _, err := loginNodes(o); err != nil { // report a missing record here, not in a log
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.statusDir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(o.statusDir, "login-"+strings.NewReplacer("/", "_", ":", "_").Replace(o.target)+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	child := exec.Command(self, append(slices.Clone(os.Args[1:]), "--foreground")...)
	child.Stdout, child.Stderr = logf, logf
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return fmt.Errorf("login: start the session process: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	deadline := time.After(o.startTimeout)
	for {
		sts, _ := multipath.ReadStatusFiles(o.statusDir)
		var mine []multipath.Status
		for _, st := range sts {
			if st.PID == child.Process.Pid {
				mine = append(mine, st)
			}
		}
		if len(mine) > 0 {
			printLogins(cmd.OutOrStdout(), mine)
			for _, st := range mine {
				fmt.Fprintf(cmd.OutOrStdout(), "%s (%s) %s (process %d, log %s)\n", st.Name, st.WWID, st.Device, st.PID, logPath)
			}
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("login: the session process ended (%v); its log %s says:\n%s", err, logPath, tail(logPath, 10))
		case <-deadline:
			child.Process.Signal(syscall.SIGTERM)
			return fmt.Errorf("login: not logged in after %v; log %s:\n%s", o.startTimeout, logPath, tail(logPath, 10))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(path string, lines int) string {
	b, _ := os.ReadFile(path)
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}
