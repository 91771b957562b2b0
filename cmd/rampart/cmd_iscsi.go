package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
)

type iscsiDiscoverOptions struct {
	initiatorName, chap string
	json                bool
	timeout             time.Duration
}

func newISCSICmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "iscsi", Short: "iSCSI initiator tools (like iscsiadm)"}
	o := &iscsiDiscoverOptions{}
	d := &cobra.Command{
		Use:   "discover PORTAL",
		Short: "List the targets a portal offers (SendTargets), with every portal of each",
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
	d.Flags().DurationVar(&o.timeout, "timeout", 15*time.Second, "give up after this long")
	cmd.AddCommand(d)
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
