package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/fuseexport"
	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/multipath"
	"github.com/rampart-storage/rampart/internal/nbd"
)

const defaultStatusDir = "/run/rampart/multipath"

type attachOptions struct {
	fuseDir, nbdAddr, name  string
	alias, bindingsFile     string
	policy, selector        string
	pollingInterval         time.Duration
	replacementTimeout      time.Duration
	fastIOFail              string
	noPathRetry             int
	queueIfNoPath           bool
	failback                string
	initiatorName, chap     string
	nopInterval, nopTimeout time.Duration
	statusDir               string
	urls                    []string
	// ready, when set, sees the maps' first status (iscsi login prints its logins).
	ready func([]multipath.Status)
}

func newAttachCmd(g *globalOptions) *cobra.Command {
	o := &attachOptions{}
	cmd := &cobra.Command{
		Use:   "attach (--fuse MOUNTDIR | --nbd ADDR:PORT) [--name NAME | --alias NAME] [flags] URL [URL...]",
		Short: "Attach a remote LUN over every path (multipath) as a file in a FUSE mount or an NBD export",
		Long: `attach logs in to every path of one LUN (iscsi://HOST[:PORT]/IQN/LUN URLs), merges them
into one multipath device and shows it to the host until signalled:

  --fuse MOUNTDIR   as the file MOUNTDIR/NAME: losetup, mkfs.xfs and mount put a kernel
                    file system on it (no iSCSI or NBD kernel module needed)
  --nbd ADDR:PORT   as the NBD export NAME, for nbd-client, libnbd tools or fio

On machines with the kernel modules, open-iscsi + dm-multipath (or nbd-client) are the
usual attachments; rampart's target serves them too. While attached, the map's state is
in --status-dir for 'rampart multipath status'.`,
		Example: `  rampart attach --fuse /mnt/lun --name mpatha --policy failover \
      iscsi://10.3.1.1:3260/iqn.2024-03.org.clusterlab:storage.md0/0 \
      iscsi://10.3.2.1:3260/iqn.2024-03.org.clusterlab:storage.md0/0`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.urls = args
			return runAttach(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "the map's name, e.g. mpatha (not recorded; see --alias)")
	f.StringVar(&o.chap, "chap", "", "CHAP USER:SECRET for every path")
	f.DurationVar(&o.nopInterval, "nop-interval", 500*time.Millisecond, "NOP-Out ping after this much silence on a path")
	f.DurationVar(&o.nopTimeout, "nop-timeout", time.Second, "a path whose ping is unanswered this long is faulty")
	f.DurationVar(&o.replacementTimeout, "replacement-timeout", 15*time.Second,
		"how long a dropped session holds its commands while it logs in again (node.session.timeo.replacement_timeout); applies with --fast-io-fail off")
	addMapFlags(cmd, o)
	return cmd
}

// addMapFlags adds the flags attach and iscsi login share: where the LUN is shown,
// and the multipath.conf-like settings of its map.
func addMapFlags(cmd *cobra.Command, o *attachOptions) {
	f := cmd.Flags()
	f.StringVar(&o.fuseDir, "fuse", "", "show the LUN as a file in a FUSE mount at this directory")
	f.StringVar(&o.nbdAddr, "nbd", "", "export the LUN over NBD on this address")
	f.StringVar(&o.alias, "alias", "", "the map's alias, recorded for its WWID in --bindings-file and refused if bound to another LUN;\nwithout a name the bindings file names the map (mpatha, mpathb, ...)")
	f.StringVar(&o.bindingsFile, "bindings-file", multipath.DefaultBindingsFile, "aliases by WWID (like /etc/multipath/bindings)")
	f.StringVar(&o.policy, "policy", "failover", "path grouping policy: failover, multibus or group_by_prio (ALUA)")
	f.StringVar(&o.selector, "selector", "service-time", "path selector within a group: round-robin, queue-length or service-time")
	f.DurationVar(&o.pollingInterval, "polling-interval", 2*time.Second, "path checker interval")
	f.IntVar(&o.noPathRetry, "no-path-retry", 100, "polling intervals to queue I/O when no path is left, then fail")
	f.BoolVar(&o.queueIfNoPath, "queue-if-no-path", false, "queue I/O forever when no path is left")
	f.StringVar(&o.failback, "failback", "immediate", "immediate, manual, or a delay such as 10s")
	f.StringVar(&o.initiatorName, "initiator-name", initiator.DefaultInitiatorName, "this initiator's IQN")
	f.StringVar(&o.fastIOFail, "fast-io-fail", "0s",
		"how long a command of a dropped path waits for that path before failing over: a duration, or off to use the replacement timeout (fast_io_fail_tmo)")
	f.StringVar(&o.statusDir, "status-dir", defaultStatusDir, "where the map's state is kept for 'multipath status' and 'iscsi session'")
}

func runAttach(ctx context.Context, g *globalOptions, o *attachOptions) error {
	if (o.fuseDir == "") == (o.nbdAddr == "") {
		return fmt.Errorf("attach: give exactly one of --fuse and --nbd: %w", errUsage)
	}
	cfg, err := o.mapConfig(g, o.urls)
	if err != nil {
		return err
	}
	return serveMaps(ctx, g.logger(), []multipath.Config{cfg}, o, "attach")
}

// mapConfig turns the flags into a map's configuration over urls.
func (o *attachOptions) mapConfig(g *globalOptions, urls []string) (multipath.Config, error) {
	if o.name != "" && o.alias != "" {
		return multipath.Config{}, fmt.Errorf("attach: give --name or --alias, not both: %w", errUsage)
	}
	if n := o.name + o.alias; n != "" && !multipath.ValidAlias(n) {
		return multipath.Config{}, fmt.Errorf("attach: the map's name %q must be a plain name such as mpatha: %w", n, errUsage)
	}
	cfg := multipath.Config{
		Name: o.name, URLs: urls, Policy: multipath.Policy(o.policy), Selector: multipath.Selector(o.selector),
		PollingInterval: o.pollingInterval, NoPathRetry: o.noPathRetry, QueueIfNoPath: o.queueIfNoPath,
		Session: initiator.Options{InitiatorName: o.initiatorName, NopInterval: o.nopInterval, NopTimeout: o.nopTimeout,
			ReplacementTimeout: o.replacementTimeout},
		Logger: g.logger(),
	}
	if o.name == "" {
		alias, file := o.alias, o.bindingsFile
		cfg.Alias = func(wwid string) (string, error) { return multipath.Bind(file, alias, wwid) }
	}
	if o.replacementTimeout <= 0 {
		return cfg, fmt.Errorf("attach: --replacement-timeout must be positive: %w", errUsage)
	}
	switch o.fastIOFail {
	case "off":
		cfg.FastIOFail = multipath.FastIOFailOff
	default:
		d, err := time.ParseDuration(o.fastIOFail)
		if err != nil || d < 0 {
			return cfg, fmt.Errorf("attach: --fast-io-fail %q: want a duration or off: %w", o.fastIOFail, errUsage)
		}
		cfg.FastIOFail = d
	}
	switch o.failback {
	case "immediate":
	case "manual":
		cfg.ManualFailback = true
	default:
		d, err := time.ParseDuration(o.failback)
		if err != nil {
			return cfg, fmt.Errorf("attach: --failback %q: want immediate, manual or a duration: %w", o.failback, errUsage)
		}
		cfg.Failback = d
	}
	if o.chap != "" {
		u, s, ok := strings.Cut(o.chap, ":")
		if !ok {
			return cfg, fmt.Errorf("attach: --chap wants USER:SECRET: %w", errUsage)
		}
		cfg.Session.CHAP = &initiator.CHAP{User: u, Secret: s}
	}
	return cfg, nil
}

// serveMaps opens every map and shows it to the host (one FUSE file, or one NBD export
// each) until ctx ends, keeping each map's status file in o.statusDir.
func serveMaps(ctx context.Context, log *slog.Logger, cfgs []multipath.Config, o *attachOptions, origin string) error {
	type attached struct {
		m      *multipath.Map
		dev    *initiator.LUN
		device string
	}
	var maps []*attached
	defer func() {
		for _, a := range maps {
			a.m.Close()
		}
	}()
	for _, cfg := range cfgs {
		m, err := multipath.Open(ctx, cfg)
		if err != nil {
			return err
		}
		a := &attached{m: m}
		maps = append(maps, a)
		if a.dev, err = m.Device(); err != nil {
			return fmt.Errorf("attach %s: %w", m.Name(), err)
		}
	}
	if o.fuseDir != "" {
		if len(maps) != 1 {
			return fmt.Errorf("attach: --fuse shows one LUN, got %d (choose one with --lun, or use --nbd): %w", len(maps), errUsage)
		}
		a := maps[0]
		srv, err := fuseexport.Mount(o.fuseDir, a.m.Name(), a.dev)
		if err != nil {
			return err
		}
		defer srv.Unmount()
		a.device = "fuse:" + filepath.Join(o.fuseDir, a.m.Name())
		log.Info("attached", "file", filepath.Join(o.fuseDir, a.m.Name()), "id", a.m.ID(), "size", a.dev.Size())
	} else {
		var exports []nbd.Export
		for _, a := range maps {
			exports = append(exports, nbd.Export{Name: a.m.Name(), Device: a.dev})
		}
		s, err := nbd.New(nbd.Config{Listen: o.nbdAddr, Exports: exports, Logger: log})
		if err != nil {
			return err
		}
		if err := s.Start(ctx); err != nil {
			return err
		}
		defer s.Close()
		for _, a := range maps {
			a.device = s.URI(a.m.Name())
			log.Info("attached", "url", a.device, "id", a.m.ID(), "size", a.dev.Size())
		}
	}
	defer func() {
		for _, a := range maps {
			multipath.RemoveStatusFile(o.statusDir, a.m.Name())
		}
	}()
	// Rewrite the status files at once when a path changes state, and every 0.5 s.
	kick := make(chan struct{}, 1)
	for _, a := range maps {
		go func() {
			for {
				select {
				case <-a.m.Updates():
					select {
					case kick <- struct{}{}:
					default:
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	// and serve requests to log out of or in to one portal (rampart iscsi logout -p,
	// login) meanwhile.
	t := time.NewTicker(min(o.pollingInterval, 500*time.Millisecond))
	defer t.Stop()
	var sts []multipath.Status
	update := func() {
		sts = sts[:0]
		for _, a := range maps {
			st := a.m.Status(a.dev.Size())
			st.Device, st.PID, st.Origin, st.PortalRequests = a.device, os.Getpid(), origin, true
			if err := multipath.WriteStatusFile(o.statusDir, st); err != nil {
				log.Warn("cannot save multipath status", "dir", o.statusDir, "err", err)
			}
			sts = append(sts, st)
		}
	}
	mps := make([]*multipath.Map, len(maps))
	for i, a := range maps {
		mps[i] = a.m
	}
	for first := true; ; first = false {
		update()
		if first && o.ready != nil {
			o.ready(sts)
		}
		handlePortalRequests(ctx, log, o.statusDir, mps, update)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-kick:
		}
	}
}

type multipathStatusOptions struct {
	statusDir string
	json      bool
}

func newMultipathCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "multipath", Short: "Show multipath maps of running 'rampart attach' processes"}
	o := &multipathStatusOptions{}
	st := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show each map, its identity and every path's state (like multipath -ll)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sts, err := multipath.ReadStatusFiles(o.statusDir)
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(cmd.OutOrStdout(), sts)
			}
			if len(sts) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no multipath map (start one with 'rampart attach')")
				return nil
			}
			var b bytes.Buffer // one write: a reader that stops early sees it all
			multipath.Print(&b, sts)
			_, err = cmd.OutOrStdout().Write(b.Bytes())
			return err
		},
	}
	st.Flags().StringVar(&o.statusDir, "status-dir", defaultStatusDir, "where attach keeps map state")
	st.Flags().BoolVar(&o.json, "json", false, "print JSON")
	cmd.AddCommand(st)
	return cmd
}
