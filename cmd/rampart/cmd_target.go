package main

// The `rampart target` command group: the saved target configuration (backstores,
// targets, portals, LUNs, ACLs, CHAP) edited one object at a time like targetcli,
// applied from a declarative file, shown as a tree, and served.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/iscsi/target"
	"github.com/rampart-storage/rampart/internal/units"
)

// targetOptions are the flags shared by every `rampart target` subcommand.
type targetOptions struct {
	g      *globalOptions
	config string
}

func newTargetCmd(g *globalOptions) *cobra.Command {
	to := &targetOptions{g: g}
	cmd := &cobra.Command{
		Use:   "target",
		Short: "Configure and serve the iSCSI target (backstores, targets, portals, LUNs, ACLs)",
		Long: `Configure and serve the iSCSI target.

Edits change the saved configuration (--config, default ` + target.DefaultConfigPath + `);
a running "rampart target serve" picks them up within a second.`,
	}
	cmd.PersistentFlags().StringVar(&to.config, "config", target.DefaultConfigPath, "target configuration file")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %w", err, errUsage) })
	cmd.AddCommand(
		newTargetBackstoreCmd(to),
		newTargetCreateCmd(to),
		newTargetDeleteCmd(to),
		newTargetPortalCmd(to),
		newTargetTPGCmd(to),
		newTargetLUNCmd(to),
		newTargetACLCmd(to),
		newTargetCHAPCmd(to),
		newTargetDiscoveryCHAPCmd(to),
		newTargetOpenCmd(to, true),
		newTargetOpenCmd(to, false),
		newTargetShowCmd(to),
		newTargetApplyCmd(to),
		newTargetServeCmd(to),
	)
	return cmd
}

// exactArgs is cobra.ExactArgs whose error is a usage error (exit status 2).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s: got %d arguments, want %d (%s): %w", cmd.CommandPath(), len(args), n, cmd.Use, errUsage)
		}
		return nil
	}
}

// update applies edit to the saved configuration under its lock. Refused edits and
// invalid results are usage errors.
func (o *targetOptions) update(edit func(*target.Config) error) error {
	err := target.NewStore(o.config).Update(edit)
	if errors.Is(err, target.ErrEdit) || errors.Is(err, target.ErrInvalidConfig) {
		return fmt.Errorf("%w: %w", err, errUsage)
	}
	return err
}

func usagef(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errUsage)...)
}

// --- backstore ---

type targetBackstoreCreateOptions struct {
	*targetOptions
	name, volume string
	size         string
	blockSize    int
	readOnly     bool
}

func newTargetBackstoreCmd(to *targetOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "backstore", Short: "Create or delete backstores (volumes targets can map as LUNs)"}
	co := &targetBackstoreCreateOptions{targetOptions: to}
	create := &cobra.Command{
		Use:   "create NAME VOLUME",
		Short: "Add a backstore NAME serving VOLUME (a path or any volume spec)",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			co.name, co.volume = args[0], args[1]
			return runTargetBackstoreCreate(cmd.Context(), co)
		},
	}
	create.Flags().StringVar(&co.size, "size", "", "size of a plain file to create sparse if missing (K/M/G/T suffixes)")
	create.Flags().IntVar(&co.blockSize, "block-size", 512, "logical block size of a plain file: 512 or 4096")
	create.Flags().BoolVar(&co.readOnly, "read-only", false, "serve the backstore read-only")

	do := &targetDeleteOptions{targetOptions: to}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Remove a backstore (refused while mapped as a LUN unless --force)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			do.name = args[0]
			return runTargetBackstoreDelete(cmd.Context(), do)
		},
	}
	del.Flags().BoolVar(&do.force, "force", false, "also remove the LUNs that map it")

	ro := &targetBackstoreResizeOptions{targetOptions: to}
	resize := &cobra.Command{
		Use:   "resize NAME SIZE",
		Short: "Grow the plain file of backstore NAME to SIZE (shrinking needs --force)",
		Long: `Grow the plain file of backstore NAME to SIZE (K/M/G/T suffixes) and record the size.
A running "rampart target serve" notices the new size within a second and raises
CAPACITY DATA HAS CHANGED (2A/09) on every session of the LUN, so initiators re-read the
capacity. Block devices and other volumes are resized with their own tools; the server
notices them the same way (at once on SIGHUP).`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ro.name, ro.size = args[0], args[1]
			return runTargetBackstoreResize(cmd.Context(), ro)
		},
	}
	resize.Flags().BoolVar(&ro.force, "force", false, "allow shrinking (discards the data past SIZE)")
	cmd.AddCommand(create, del, resize)
	return cmd
}

type targetBackstoreResizeOptions struct {
	*targetOptions
	name, size string
	force      bool
}

func runTargetBackstoreResize(_ context.Context, o *targetBackstoreResizeOptions) error {
	n, err := units.ParseSize(o.size)
	if err != nil {
		return usagef("backstore %s: size: %w", o.name, err)
	}
	return o.update(func(c *target.Config) error {
		b := c.Backstore(o.name)
		if b == nil {
			return fmt.Errorf("%w: backstore %q does not exist", target.ErrEdit, o.name)
		}
		if err := target.ResizeFile(*b, n, o.force); err != nil {
			return err
		}
		b.Size = n
		return nil
	})
}

func runTargetBackstoreCreate(_ context.Context, o *targetBackstoreCreateOptions) error {
	b := target.Backstore{Name: o.name, Volume: o.volume, ReadOnly: o.readOnly}
	if o.size != "" {
		n, err := units.ParseSize(o.size)
		if err != nil {
			return usagef("backstore %s: --size: %w", o.name, err)
		}
		b.Size = n
	}
	if o.blockSize != 512 && o.blockSize != 4096 {
		return usagef("backstore %s: --block-size %d, want 512 or 4096", o.name, o.blockSize)
	}
	if o.blockSize != 512 {
		b.BlockSize = o.blockSize
	}
	return o.update(func(c *target.Config) error { return c.AddBackstore(b) })
}

// targetDeleteOptions serve every "delete NAME [--force]" subcommand.
type targetDeleteOptions struct {
	*targetOptions
	name  string
	force bool
}

func runTargetBackstoreDelete(_ context.Context, o *targetDeleteOptions) error {
	return o.update(func(c *target.Config) error { return c.DeleteBackstore(o.name, o.force) })
}

// --- target create/delete, open/close ---

func newTargetCreateCmd(to *targetOptions) *cobra.Command {
	o := &targetDeleteOptions{targetOptions: to}
	return &cobra.Command{
		Use:   "create IQN",
		Short: "Add an empty target IQN (then add portals, LUNs and ACLs)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return runTargetCreate(cmd.Context(), o)
		},
	}
}

func runTargetCreate(_ context.Context, o *targetDeleteOptions) error {
	return o.update(func(c *target.Config) error { return c.AddTarget(o.name) })
}

func newTargetDeleteCmd(to *targetOptions) *cobra.Command {
	o := &targetDeleteOptions{targetOptions: to}
	cmd := &cobra.Command{
		Use:   "delete IQN",
		Short: "Remove a target (refused while it has LUNs or ACLs unless --force)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return runTargetDelete(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.force, "force", false, "delete even with LUNs or ACLs")
	return cmd
}

func runTargetDelete(_ context.Context, o *targetDeleteOptions) error {
	return o.update(func(c *target.Config) error { return c.DeleteTarget(o.name, o.force) })
}

type targetOpenOptions struct {
	*targetOptions
	iqn  string
	open bool
}

func newTargetOpenCmd(to *targetOptions, open bool) *cobra.Command {
	o := &targetOpenOptions{targetOptions: to, open: open}
	use, short := "open IQN", "Admit every initiator to a target (like generate_node_acls=1)"
	if !open {
		use, short = "close IQN", "Admit only the initiators of a target's ACLs"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.iqn = args[0]
			return runTargetOpen(cmd.Context(), o)
		},
	}
}

func runTargetOpen(_ context.Context, o *targetOpenOptions) error {
	return o.update(func(c *target.Config) error { return c.SetOpenAccess(o.iqn, o.open) })
}

// --- portal ---

type targetPortalOptions struct {
	*targetOptions
	iqn, portal string
	tag         uint16
}

func newTargetPortalCmd(to *targetOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "portal", Short: "Add or remove a target's portals (ADDR:PORT, grouped in TPGs)"}
	co := &targetPortalOptions{targetOptions: to}
	create := &cobra.Command{
		Use:   "create IQN ADDR[:PORT]",
		Short: "Listen for target IQN on ADDR:PORT (port 3260 by default) in TPG --tpg",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			co.iqn, co.portal = args[0], args[1]
			return runTargetPortalCreate(cmd.Context(), co)
		},
	}
	create.Flags().Uint16Var(&co.tag, "tpg", 1, "target portal group tag (also the ALUA port group)")
	do := &targetPortalOptions{targetOptions: to}
	del := &cobra.Command{
		Use:   "delete IQN ADDR[:PORT]",
		Short: "Stop listening for target IQN on ADDR:PORT",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			do.iqn, do.portal = args[0], args[1]
			return runTargetPortalDelete(cmd.Context(), do)
		},
	}
	cmd.AddCommand(create, del)
	return cmd
}

func runTargetPortalCreate(_ context.Context, o *targetPortalOptions) error {
	if o.tag == 0 {
		return usagef("target %s: --tpg 0: portal group tags start at 1", o.iqn)
	}
	return o.update(func(c *target.Config) error { return c.AddPortal(o.iqn, o.portal, o.tag) })
}

func runTargetPortalDelete(_ context.Context, o *targetPortalOptions) error {
	return o.update(func(c *target.Config) error { return c.DeletePortal(o.iqn, o.portal) })
}

// --- tpg ---

type targetTPGOptions struct {
	*targetOptions
	iqn   string
	tag   uint16
	state string
}

func newTargetTPGCmd(to *targetOptions) *cobra.Command {
	o := &targetTPGOptions{targetOptions: to}
	return &cobra.Command{
		Use:   "tpg IQN TAG alua STATE",
		Short: "Set a target portal group's ALUA state: active-optimized, active-non-optimized, standby, unavailable",
		Long: `Set the asymmetric access state of target portal group TAG of target IQN. Each
portal group is one ALUA target port group (ID = TAG). Initiators read the states with
REPORT TARGET PORT GROUPS (multipath's group_by_prio / alua prioritizer); a standby or
unavailable group answers media access with NOT READY (04/0B, 04/0C), a non-optimized
group still serves I/O. A running "rampart target serve" applies the change within a
second and raises ASYMMETRIC ACCESS STATE CHANGED (2A/06) on every session of the target.

  rampart target tpg iqn.2026-11.org.example:disk0 2 alua standby`,
		Args: exactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			tag, err := strconv.ParseUint(args[1], 10, 16)
			if err != nil {
				return usagef("target %s: portal group tag %q: want a number from 1 to 65535", args[0], args[1])
			}
			if args[2] != "alua" {
				return usagef("target %s portal group %d: attribute %q: the only settable attribute is alua", args[0], tag, args[2])
			}
			o.iqn, o.tag, o.state = args[0], uint16(tag), args[3]
			return runTargetTPG(cmd.Context(), o)
		},
	}
}

func runTargetTPG(_ context.Context, o *targetTPGOptions) error {
	return o.update(func(c *target.Config) error { return c.SetALUA(o.iqn, o.tag, o.state) })
}

// --- lun ---

type targetLUNOptions struct {
	*targetOptions
	iqn, backstore string
	lun            int64     // -1: next free
	out            io.Writer // where lun create reports the LUN number
}

func newTargetLUNCmd(to *targetOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "lun", Short: "Map or unmap backstores as a target's LUNs"}
	co := &targetLUNOptions{targetOptions: to}
	create := &cobra.Command{
		Use:   "create IQN BACKSTORE",
		Short: "Map BACKSTORE into target IQN (as the lowest free LUN unless --lun)",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			co.iqn, co.backstore, co.out = args[0], args[1], cmd.OutOrStdout()
			return runTargetLUNCreate(cmd.Context(), co)
		},
	}
	create.Flags().Int64Var(&co.lun, "lun", -1, "LUN number (default: lowest free)")
	do := &targetLUNOptions{targetOptions: to}
	del := &cobra.Command{
		Use:   "delete IQN N",
		Short: "Unmap LUN N of target IQN (and every ACL's mapping of it)",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil {
				return usagef("target %s: LUN %q: want a number", args[0], args[1])
			}
			do.iqn, do.lun = args[0], int64(n)
			return runTargetLUNDelete(cmd.Context(), do)
		},
	}
	cmd.AddCommand(create, del)
	return cmd
}

func runTargetLUNCreate(_ context.Context, o *targetLUNOptions) error {
	var lun *uint64
	if o.lun >= 0 {
		n := uint64(o.lun)
		lun = &n
	} else if o.lun != -1 {
		return usagef("target %s: --lun %d: want 0 to %d", o.iqn, o.lun, target.MaxLUN)
	}
	var n uint64
	err := o.update(func(c *target.Config) error {
		var err error
		n, err = c.AddLUN(o.iqn, o.backstore, lun)
		return err
	})
	if err != nil || o.out == nil {
		return err
	}
	_, err = fmt.Fprintf(o.out, "target %s: LUN %d -> backstore %s\n", o.iqn, n, o.backstore)
	return err
}

func runTargetLUNDelete(_ context.Context, o *targetLUNOptions) error {
	return o.update(func(c *target.Config) error { return c.DeleteLUN(o.iqn, uint64(o.lun)) })
}
