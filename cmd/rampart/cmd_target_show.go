package main

// `rampart target show`: the saved configuration as a tree like `targetcli ls`, or as
// JSON, with every CHAP secret masked.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/iscsi/target"
	"github.com/rampart-storage/rampart/internal/units"
)

type targetShowOptions struct {
	*targetOptions
	json bool
	out  io.Writer
}

func newTargetShowCmd(to *targetOptions) *cobra.Command {
	o := &targetShowOptions{targetOptions: to}
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the saved configuration as a tree (secrets masked)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.out = cmd.OutOrStdout()
			return runTargetShow(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON instead of a tree")
	return cmd
}

func runTargetShow(_ context.Context, o *targetShowOptions) error {
	cfg, err := target.NewStore(o.config).Load()
	if err != nil {
		return err
	}
	cfg = maskSecrets(cfg)
	if o.json {
		enc := json.NewEncoder(o.out)
		enc.SetIndent("", "  ")
		return enc.Encode(cfg)
	}
	_, err = io.WriteString(o.out, renderTree(cfg))
	return err
}

const masked = "********"

func maskCHAP(c *target.CHAP) *target.CHAP {
	if c == nil {
		return nil
	}
	return &target.CHAP{User: c.User, Secret: masked}
}

// maskSecrets returns a copy of cfg with every CHAP secret replaced by asterisks.
func maskSecrets(cfg target.Config) target.Config {
	out := cfg
	out.DiscoveryCHAP, out.MutualDiscoveryCHAP = maskCHAP(cfg.DiscoveryCHAP), maskCHAP(cfg.MutualDiscoveryCHAP)
	out.Targets = make([]target.Target, len(cfg.Targets))
	for i, t := range cfg.Targets {
		t.CHAP, t.MutualCHAP = maskCHAP(t.CHAP), maskCHAP(t.MutualCHAP)
		acls := make([]target.ACL, len(t.ACLs))
		for j, a := range t.ACLs {
			a.CHAP, a.MutualCHAP = maskCHAP(a.CHAP), maskCHAP(a.MutualCHAP)
			acls[j] = a
		}
		t.ACLs = acls
		out.Targets[i] = t
	}
	return out
}

func chapText(c, mutual *target.CHAP) string {
	if c == nil {
		return ""
	}
	s := " [chap " + c.User + ":" + c.Secret
	if mutual != nil {
		s += ", mutual " + mutual.User + ":" + mutual.Secret
	}
	return s + "]"
}

// renderTree draws cfg like `targetcli ls`.
func renderTree(cfg target.Config) string {
	var b strings.Builder
	line := func(depth int, format string, args ...any) {
		b.WriteString(strings.Repeat("  ", depth))
		b.WriteString("o- ")
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	line(0, "/%s", chapText(cfg.DiscoveryCHAP, cfg.MutualDiscoveryCHAP))
	line(1, "backstores [%d]", len(cfg.Backstores))
	for _, bs := range cfg.Backstores {
		var attrs []string
		if bs.Size > 0 {
			attrs = append(attrs, "size "+units.FormatSize(bs.Size))
		}
		if bs.BlockSize != 0 {
			attrs = append(attrs, fmt.Sprintf("%d-byte blocks", bs.BlockSize))
		}
		if bs.ReadOnly {
			attrs = append(attrs, "read-only")
		}
		if bs.Serial != "" {
			attrs = append(attrs, "serial "+bs.Serial)
		}
		if users := cfg.BackstoreUsers(bs.Name); len(users) > 0 {
			attrs = append(attrs, "mapped")
		} else {
			attrs = append(attrs, "unmapped")
		}
		line(2, "%s [%s] (%s)", bs.Name, bs.Volume, strings.Join(attrs, ", "))
	}
	line(1, "targets [%d]", len(cfg.Targets))
	for _, t := range cfg.Targets {
		access := fmt.Sprintf("%d ACLs", len(t.ACLs))
		if t.OpenAccess {
			access = "open access"
		}
		line(2, "%s [%s]%s", t.IQN, access, chapText(t.CHAP, t.MutualCHAP))
		line(3, "tpgs [%d]", len(t.PortalGroups))
		for _, pg := range t.PortalGroups {
			if pg.ALUA != "" {
				line(4, "tpg%d [alua %s]", pg.Tag, pg.ALUA)
			} else {
				line(4, "tpg%d", pg.Tag)
			}
			for _, p := range pg.Portals {
				line(5, "%s", p)
			}
		}
		line(3, "luns [%d]", len(t.LUNs))
		for _, l := range t.LUNs {
			vol := "?"
			if bs := cfg.Backstore(l.Backstore); bs != nil {
				vol = bs.Volume
			}
			line(4, "lun%d -> %s [%s]", l.LUN, l.Backstore, vol)
		}
		line(3, "acls [%d]", len(t.ACLs))
		for _, a := range t.ACLs {
			mapped := "all LUNs"
			if len(a.MappedLUNs) > 0 {
				mapped = fmt.Sprintf("%d mapped LUNs", len(a.MappedLUNs))
			}
			line(4, "%s [%s]%s", a.InitiatorIQN, mapped, chapText(a.CHAP, a.MutualCHAP))
			for _, m := range a.MappedLUNs {
				line(5, "mapped_lun%d -> lun%d", m.LUN, m.TargetLUN)
			}
		}
	}
	return b.String()
}
