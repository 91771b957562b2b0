package main

// Access control subcommands of `rampart target`: ACLs, CHAP, discovery CHAP, and the
// declarative apply.

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/iscsi/target"
)

type targetACLOptions struct {
	*targetOptions
	iqn, initiator string
	mapLUNs        []string // MAPPED=TARGETLUN
}

func newTargetACLCmd(to *targetOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "acl", Short: "Admit or remove initiators of a target"}
	co := &targetACLOptions{targetOptions: to}
	create := &cobra.Command{
		Use:   "create IQN INITIATOR_IQN",
		Short: "Admit INITIATOR_IQN to target IQN (seeing every LUN unless --map-lun)",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			co.iqn, co.initiator = args[0], args[1]
			return runTargetACLCreate(cmd.Context(), co)
		},
	}
	create.Flags().StringArrayVar(&co.mapLUNs, "map-lun", nil, "MAPPED=TARGETLUN: show the target's LUN TARGETLUN as LUN MAPPED (repeatable)")
	do := &targetACLOptions{targetOptions: to}
	del := &cobra.Command{
		Use:   "delete IQN INITIATOR_IQN",
		Short: "Remove INITIATOR_IQN's ACL from target IQN",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			do.iqn, do.initiator = args[0], args[1]
			return runTargetACLDelete(cmd.Context(), do)
		},
	}
	cmd.AddCommand(create, del)
	return cmd
}

func runTargetACLCreate(_ context.Context, o *targetACLOptions) error {
	var mapped []target.MappedLUN
	for _, s := range o.mapLUNs {
		a, b, ok := strings.Cut(s, "=")
		m, err1 := strconv.ParseUint(a, 10, 64)
		t, err2 := strconv.ParseUint(b, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return usagef("target %s ACL %s: --map-lun %q: want MAPPED=TARGETLUN, both numbers", o.iqn, o.initiator, s)
		}
		mapped = append(mapped, target.MappedLUN{LUN: m, TargetLUN: t})
	}
	return o.update(func(c *target.Config) error { return c.AddACL(o.iqn, o.initiator, mapped) })
}

func runTargetACLDelete(_ context.Context, o *targetACLOptions) error {
	return o.update(func(c *target.Config) error { return c.DeleteACL(o.iqn, o.initiator) })
}

// targetCHAPOptions serve "chap set|clear" and "discovery-chap set|clear".
type targetCHAPOptions struct {
	*targetOptions
	iqn, initiator           string
	user, secret             string
	mutualUser, mutualSecret string
	clear                    bool
}

// credentials returns the CHAP and mutual CHAP of the flags (nil, nil for clear).
func (o *targetCHAPOptions) credentials(where string) (chap, mutual *target.CHAP, err error) {
	if o.clear {
		return nil, nil, nil
	}
	if o.user == "" || o.secret == "" {
		return nil, nil, usagef("%s: --user and --secret are required", where)
	}
	chap = &target.CHAP{User: o.user, Secret: o.secret}
	switch {
	case o.mutualUser != "" && o.mutualSecret != "":
		mutual = &target.CHAP{User: o.mutualUser, Secret: o.mutualSecret}
	case o.mutualUser != "" || o.mutualSecret != "":
		return nil, nil, usagef("%s: --mutual-user and --mutual-secret go together", where)
	}
	return chap, mutual, nil
}

func addCHAPFlags(cmd *cobra.Command, o *targetCHAPOptions) {
	cmd.Flags().StringVar(&o.user, "user", "", "CHAP user name the initiator presents")
	cmd.Flags().StringVar(&o.secret, "secret", "", "CHAP secret (12 to 16 bytes for open-iscsi)")
	cmd.Flags().StringVar(&o.mutualUser, "mutual-user", "", "user name the target answers with (mutual CHAP)")
	cmd.Flags().StringVar(&o.mutualSecret, "mutual-secret", "", "secret the target answers with (mutual CHAP)")
}

func newTargetCHAPCmd(to *targetOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "chap", Short: "Require CHAP of a target's initiators (all, or one ACL's)"}
	for _, clear := range []bool{false, true} {
		o := &targetCHAPOptions{targetOptions: to, clear: clear}
		sub := &cobra.Command{
			Use:   "set IQN",
			Short: "Set the CHAP credentials of target IQN, or of one ACL with --initiator",
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				o.iqn = args[0]
				return runTargetCHAP(cmd.Context(), o)
			},
		}
		if clear {
			sub.Use, sub.Short = "clear IQN", "Remove the CHAP credentials of target IQN, or of one ACL with --initiator"
		} else {
			addCHAPFlags(sub, o)
		}
		sub.Flags().StringVar(&o.initiator, "initiator", "", "the ACL's initiator IQN (default: the whole target)")
		cmd.AddCommand(sub)
	}
	return cmd
}

func runTargetCHAP(_ context.Context, o *targetCHAPOptions) error {
	where := "target " + o.iqn
	if o.initiator != "" {
		where += " ACL " + o.initiator
	}
	chap, mutual, err := o.credentials(where)
	if err != nil {
		return err
	}
	return o.update(func(c *target.Config) error { return c.SetCHAP(o.iqn, o.initiator, chap, mutual) })
}

func newTargetDiscoveryCHAPCmd(to *targetOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "discovery-chap", Short: "Require CHAP in SendTargets discovery sessions"}
	for _, clear := range []bool{false, true} {
		o := &targetCHAPOptions{targetOptions: to, clear: clear}
		sub := &cobra.Command{
			Use:   "set",
			Short: "Set the discovery CHAP credentials",
			Args:  exactArgs(0),
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runTargetDiscoveryCHAP(cmd.Context(), o)
			},
		}
		if clear {
			sub.Use, sub.Short = "clear", "Allow discovery without CHAP"
		} else {
			addCHAPFlags(sub, o)
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

func runTargetDiscoveryCHAP(_ context.Context, o *targetCHAPOptions) error {
	chap, mutual, err := o.credentials("discovery")
	if err != nil {
		return err
	}
	return o.update(func(c *target.Config) error {
		c.DiscoveryCHAP, c.MutualDiscoveryCHAP = chap, mutual
		return nil
	})
}

type targetApplyOptions struct {
	*targetOptions
	file    string
	replace bool
}

func newTargetApplyCmd(to *targetOptions) *cobra.Command {
	o := &targetApplyOptions{targetOptions: to}
	cmd := &cobra.Command{
		Use:   "apply FILE",
		Short: "Bring the saved configuration to FILE's state (declarative)",
		Long: `Apply a declarative configuration file (the format of the saved configuration).

Every backstore and target in FILE replaces the one of the same name; others are kept.
With --replace the saved configuration becomes exactly FILE. Backstores without a
serial keep their saved serial (same name and volume) or get a new one.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file = args[0]
			return runTargetApply(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.replace, "replace", false, "replace the whole saved configuration with FILE")
	return cmd
}

func runTargetApply(_ context.Context, o *targetApplyOptions) error {
	file, err := target.LoadFile(o.file)
	if err != nil {
		return fmt.Errorf("apply: %w: %w", err, errUsage)
	}
	return o.update(func(c *target.Config) error {
		merged, err := target.Merge(*c, file, o.replace)
		if err != nil {
			return err
		}
		*c = merged
		return nil
	})
}
