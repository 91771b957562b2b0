package main

import (
	"context"
	"fmt"
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
	policy                  string
	pollingInterval         time.Duration
	noPathRetry             int
	queueIfNoPath           bool
	failback                string
	initiatorName, chap     string
	nopInterval, nopTimeout time.Duration
	statusDir               string
	urls                    []string
}

func newAttachCmd(g *globalOptions) *cobra.Command {
	o := &attachOptions{}
	cmd := &cobra.Command{
		Use:   "attach (--fuse MOUNTDIR | --nbd ADDR:PORT) --name NAME [flags] URL [URL...]",
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
	f.StringVar(&o.fuseDir, "fuse", "", "show the LUN as a file in a FUSE mount at this directory")
	f.StringVar(&o.nbdAddr, "nbd", "", "export the LUN over NBD on this address")
	f.StringVar(&o.name, "name", "", "the map's name (alias), e.g. mpatha")
	f.StringVar(&o.policy, "policy", "failover", "path grouping policy: failover or multibus")
	f.DurationVar(&o.pollingInterval, "polling-interval", 2*time.Second, "path checker interval")
	f.IntVar(&o.noPathRetry, "no-path-retry", 100, "polling intervals to queue I/O when no path is left, then fail")
	f.BoolVar(&o.queueIfNoPath, "queue-if-no-path", false, "queue I/O forever when no path is left")
	f.StringVar(&o.failback, "failback", "immediate", "immediate, manual, or a delay such as 10s")
	f.StringVar(&o.initiatorName, "initiator-name", initiator.DefaultInitiatorName, "this initiator's IQN")
	f.StringVar(&o.chap, "chap", "", "CHAP USER:SECRET for every path")
	f.DurationVar(&o.nopInterval, "nop-interval", 500*time.Millisecond, "NOP-Out ping after this much silence on a path")
	f.DurationVar(&o.nopTimeout, "nop-timeout", time.Second, "a path whose ping is unanswered this long is faulty")
	f.StringVar(&o.statusDir, "status-dir", defaultStatusDir, "where the map's state is kept for 'multipath status'")
	return cmd
}

func runAttach(ctx context.Context, g *globalOptions, o *attachOptions) error {
	if (o.fuseDir == "") == (o.nbdAddr == "") {
		return fmt.Errorf("attach: give exactly one of --fuse and --nbd: %w", errUsage)
	}
	if o.name == "" || strings.ContainsAny(o.name, "/\x00") {
		return fmt.Errorf("attach: --name must be a plain name such as mpatha: %w", errUsage)
	}
	cfg := multipath.Config{
		Name: o.name, URLs: o.urls, Policy: multipath.Policy(o.policy),
		PollingInterval: o.pollingInterval, NoPathRetry: o.noPathRetry, QueueIfNoPath: o.queueIfNoPath,
		Session: initiator.Options{InitiatorName: o.initiatorName, NopInterval: o.nopInterval, NopTimeout: o.nopTimeout},
		Logger:  g.logger(),
	}
	switch o.failback {
	case "immediate":
	case "manual":
		cfg.ManualFailback = true
	default:
		d, err := time.ParseDuration(o.failback)
		if err != nil {
			return fmt.Errorf("attach: --failback %q: want immediate, manual or a duration: %w", o.failback, errUsage)
		}
		cfg.Failback = d
	}
	if o.chap != "" {
		u, s, ok := strings.Cut(o.chap, ":")
		if !ok {
			return fmt.Errorf("attach: --chap wants USER:SECRET: %w", errUsage)
		}
		cfg.Session.CHAP = &initiator.CHAP{User: u, Secret: s}
	}
	m, err := multipath.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer m.Close()
	dev, err := m.Device()
	if err != nil {
		return fmt.Errorf("attach %s: %w", o.name, err)
	}
	log := g.logger()
	if o.fuseDir != "" {
		srv, err := fuseexport.Mount(o.fuseDir, o.name, dev)
		if err != nil {
			return err
		}
		defer srv.Unmount()
		log.Info("attached", "file", o.fuseDir+"/"+o.name, "id", m.ID(), "size", dev.Size())
	} else {
		s, err := nbd.New(nbd.Config{Listen: o.nbdAddr, Exports: []nbd.Export{{Name: o.name, Device: dev}}, Logger: log})
		if err != nil {
			return err
		}
		if err := s.Start(ctx); err != nil {
			return err
		}
		defer s.Close()
		log.Info("attached", "url", fmt.Sprintf("nbd://%s/%s", s.Addr(), o.name), "id", m.ID(), "size", dev.Size())
	}
	t := time.NewTicker(min(o.pollingInterval, 500*time.Millisecond))
	defer t.Stop()
	for {
		if err := multipath.WriteStatusFile(o.statusDir, m.Status(dev.Size())); err != nil {
			log.Warn("cannot save multipath status", "dir", o.statusDir, "err", err)
		}
		select {
		case <-ctx.Done():
			multipath.RemoveStatusFile(o.statusDir, o.name)
			return nil
		case <-t.C:
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
			multipath.Print(cmd.OutOrStdout(), sts)
			return nil
		},
	}
	st.Flags().StringVar(&o.statusDir, "status-dir", defaultStatusDir, "where attach keeps map state")
	st.Flags().BoolVar(&o.json, "json", false, "print JSON")
	cmd.AddCommand(st)
	return cmd
}
