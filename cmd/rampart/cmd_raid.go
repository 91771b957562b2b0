package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/raid"
	"github.com/rampart-storage/rampart/internal/units"
	"github.com/rampart-storage/rampart/internal/volume"
)

// raidOptions are the flags of the raid subcommands.
type raidOptions struct {
	level       int
	chunk       string
	name        string
	force       bool
	journal     string
	writeMostly []int
	size        string
	member      string // fail, remove, replace: the member acted on
	with        string // add, replace: the new member
	minSpeed    string
	maxSpeed    string
	dropStale   bool
	out         io.Writer
}

func newRaidCmd(g *globalOptions) *cobra.Command {
	o := &raidOptions{out: os.Stdout}
	cmd := &cobra.Command{
		Use:   "raid",
		Short: "RAID 0/1/5/6/10 arrays in user space over any volumes",
		Long: `RAID arrays in user space. MEMBER is a volume spec (a file, a block device, a
remote LUN); "missing" stands for an absent member. A running array is the volume
raid:MEMBER,MEMBER,... for every command that takes a volume.

The management commands below work on an array that no process is serving: they
assemble it from its members, act, and stop it cleanly.`,
	}
	sub := func(use, short string, run func(context.Context, *raidOptions, []string) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.MinimumNArgs(1),
			RunE: func(c *cobra.Command, args []string) error { return run(c.Context(), o, args) }}
	}
	create := sub("create --level N [--chunk 64K] MEMBER...", "Write superblocks to new members", runRaidCreate)
	create.Flags().IntVar(&o.level, "level", 5, "RAID level: 0, 1, 5, 6 or 10")
	create.Flags().StringVar(&o.chunk, "chunk", "64K", "chunk size")
	create.Flags().StringVar(&o.name, "name", "", "array name (default: from the UUID)")
	create.Flags().BoolVar(&o.force, "force", false, "create over members that carry a superblock")
	create.Flags().StringVar(&o.journal, "journal", "full", "RAID-5/6 write hole: full (journal all stripe updates), intent (EXPERIMENTAL, fails the model test: log only the intent of full-stripe writes), none (hole open)")
	create.Flags().IntSliceVar(&o.writeMostly, "write-mostly", nil, "RAID-1/10: indexes of members reads avoid")
	create.Flags().StringVar(&o.size, "size", "", "create missing member files of this size")
	examine := sub("examine MEMBER...", "Print what each member's superblock says", runRaidExamine)
	detail := sub("detail MEMBER...", "Assemble read-only and describe the array", runRaidDetail)
	status := sub("status MEMBER...", "Assemble read-only and print a /proc/mdstat-style status", runRaidStatus)
	assemble := sub("assemble MEMBER...", "Assemble (replaying the journal, resyncing, rebuilding onto spares) and stop cleanly", runRaidAssemble)
	fail := sub("fail --member M MEMBER...", "Mark a member faulty", runRaidFail)
	remove := sub("remove --member M MEMBER...", "Take a faulty member or spare out of the array", runRaidRemove)
	add := sub("add --new M MEMBER...", "Add a member: rebuilt into a missing role, or a spare", runRaidAdd)
	replace := sub("replace --member OLD --new NEW MEMBER...", "Rebuild NEW from the others, then fail OLD", runRaidReplace)
	check := sub("check MEMBER...", "Scrub: count parity or mirror mismatches", runRaidCheck)
	repair := sub("repair MEMBER...", "Scrub and fix parity or mirror mismatches", runRaidRepair)
	for _, c := range []*cobra.Command{fail, remove, replace} {
		c.Flags().StringVar(&o.member, "member", "", "the member to act on (as given in MEMBER...)")
		c.Flags().BoolVar(&o.force, "force", false, "act even if that takes the array below its fault tolerance")
	}
	for _, c := range []*cobra.Command{add, replace} {
		c.Flags().StringVar(&o.with, "new", "", "the new member (volume spec)")
	}
	for _, c := range []*cobra.Command{add, replace, assemble} {
		c.Flags().StringVar(&o.minSpeed, "min-speed", "1M", "rebuild speed while the array is busy, per second")
		c.Flags().StringVar(&o.maxSpeed, "max-speed", "0", "rebuild speed when idle, per second (0: unlimited)")
		c.Flags().BoolVar(&o.dropStale, "drop-stale", false, "assemble without stale members instead of refusing")
	}
	cmd.AddCommand(create, examine, detail, status, assemble, fail, remove, add, replace, check, repair)
	return cmd
}

func runRaidCreate(ctx context.Context, o *raidOptions, args []string) error {
	switch o.journal {
	case "full", "intent", "none":
	default:
		return fmt.Errorf("raid create: --journal %q: want full, intent or none: %w", o.journal, errUsage)
	}
	chunk, err := units.ParseSize(o.chunk)
	if err != nil {
		return fmt.Errorf("raid create: --chunk: %w: %w", err, errUsage)
	}
	vo := volume.Options{}
	if o.size != "" {
		if vo.Size, err = units.ParseSize(o.size); err != nil {
			return fmt.Errorf("raid create: --size: %w: %w", err, errUsage)
		}
		vo.Create = true
	}
	ms := make([]raid.Member, len(args))
	defer raid.CloseMembers(ms)
	for i, spec := range args {
		if spec == "missing" {
			ms[i] = raid.Member{Name: spec}
			continue
		}
		d, err := volume.Open(ctx, spec, vo)
		if err != nil {
			return fmt.Errorf("raid create: %w", err)
		}
		ms[i] = raid.Member{Dev: d, Name: spec}
	}
	err = raid.Create(ms, raid.CreateOptions{Level: o.level, Chunk: chunk, Name: o.name, Force: o.force,
		NoJournal: o.journal == "none", IntentJournal: o.journal == "intent", WriteMostly: o.writeMostly})
	if err != nil {
		return fmt.Errorf("raid %w", err)
	}
	fmt.Fprintf(o.out, "created raid%d of %d members\n", o.level, len(args))
	return nil
}

func runRaidExamine(ctx context.Context, o *raidOptions, args []string) error {
	var errs []error
	for _, spec := range args {
		d, err := volume.Open(ctx, spec, volume.Options{ReadOnly: true})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sb, err := raid.ReadSuperblock(d)
		raid.CloseMembers([]raid.Member{{Dev: d}})
		if err != nil {
			errs = append(errs, fmt.Errorf("examine %s: %w", spec, err))
			continue
		}
		fmt.Fprintf(o.out, "%s:\n%s\n", spec, sb)
	}
	return errors.Join(errs...)
}

// withArray assembles the array from args, runs fn and stops the array cleanly.
func withArray(ctx context.Context, o *raidOptions, args []string, readOnly bool, fn func(*raid.Array) error) error {
	ms, err := raid.OpenMembers(ctx, raidSpecs(args), readOnly)
	if err != nil {
		return err
	}
	opts := raid.AssembleOptions{ReadOnly: readOnly, DropStale: o.dropStale, NoAutoRebuild: readOnly}
	if o.minSpeed != "" {
		if opts.MinSpeed, err = units.ParseSize(o.minSpeed); err != nil {
			return fmt.Errorf("--min-speed: %w: %w", err, errUsage)
		}
	}
	if o.maxSpeed != "" {
		if opts.MaxSpeed, err = units.ParseSize(o.maxSpeed); err != nil {
			return fmt.Errorf("--max-speed: %w: %w", err, errUsage)
		}
	}
	a, err := raid.Assemble(ctx, ms, opts)
	if err != nil {
		raid.CloseMembers(ms)
		return err
	}
	err = fn(a)
	return errors.Join(err, a.Close())
}

func raidSpecs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "missing" {
			out[i] = a
		}
	}
	return out
}

func runRaidDetail(ctx context.Context, o *raidOptions, args []string) error {
	return withArray(ctx, o, args, true, func(a *raid.Array) error {
		st := a.Status()
		state := "clean"
		if !st.Clean {
			state = "dirty"
		}
		if st.Active < st.RaidDevices {
			state += ", degraded"
		}
		fmt.Fprintf(o.out, "           Name : %s\n           UUID : %s\n     Raid Level : raid%d\n     Array Size : %s\n",
			st.Name, st.UUID, st.Level, units.FormatSize(st.Size))
		fmt.Fprintf(o.out, "   Raid Devices : %d\n Active Devices : %d\n     Chunk Size : %s\n          State : %s\n         Events : %d\n\n",
			st.RaidDevices, st.Active, units.FormatSize(st.Chunk), state, st.Events)
		fmt.Fprintf(o.out, "   Role   State        Member\n")
		for _, m := range st.Members {
			role := fmt.Sprint(m.Role)
			if m.Role < 0 {
				role = "spare"
			}
			flags := ""
			if m.WriteMostly {
				flags = " (write-mostly)"
			}
			fmt.Fprintf(o.out, "   %-6s %-12s %s%s\n", role, m.State, m.Name, flags)
		}
		return nil
	})
}

func runRaidStatus(ctx context.Context, o *raidOptions, args []string) error {
	return withArray(ctx, o, args, true, func(a *raid.Array) error {
		fmt.Fprint(o.out, a.Status())
		return nil
	})
}

func runRaidAssemble(ctx context.Context, o *raidOptions, args []string) error {
	return withArray(ctx, o, args, false, func(a *raid.Array) error {
		err := waitRebuild(ctx, o, a)
		fmt.Fprint(o.out, a.Status())
		return err
	})
}

// waitRebuild prints the rebuild progress every few seconds until it ends.
func waitRebuild(ctx context.Context, o *raidOptions, a *raid.Array) error {
	done := make(chan error, 1)
	go func() { done <- a.WaitRebuild(ctx) }()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-t.C:
			fmt.Fprint(o.out, a.Status())
		}
	}
}

func runRaidFail(ctx context.Context, o *raidOptions, args []string) error {
	if o.member == "" {
		return fmt.Errorf("raid fail: give --member: %w", errUsage)
	}
	return withArray(ctx, o, args, false, func(a *raid.Array) error {
		if err := a.FailMember(o.member, o.force); err != nil {
			return err
		}
		fmt.Fprint(o.out, a.Status())
		return nil
	})
}

func runRaidRemove(ctx context.Context, o *raidOptions, args []string) error {
	if o.member == "" {
		return fmt.Errorf("raid remove: give --member: %w", errUsage)
	}
	return withArray(ctx, o, args, false, func(a *raid.Array) error {
		if err := a.RemoveMember(o.member, o.force); err != nil {
			return err
		}
		fmt.Fprint(o.out, a.Status())
		return nil
	})
}

func runRaidAdd(ctx context.Context, o *raidOptions, args []string) error {
	if o.with == "" {
		return fmt.Errorf("raid add: give --new: %w", errUsage)
	}
	return withArray(ctx, o, args, false, func(a *raid.Array) error {
		d, err := volume.Open(ctx, o.with, volume.Options{})
		if err != nil {
			return err
		}
		if err := a.AddMember(d, o.with); err != nil {
			raid.CloseMembers([]raid.Member{{Dev: d}})
			return err
		}
		err = waitRebuild(ctx, o, a)
		fmt.Fprint(o.out, a.Status())
		return err
	})
}

func runRaidReplace(ctx context.Context, o *raidOptions, args []string) error {
	if o.with == "" || o.member == "" {
		return fmt.Errorf("raid replace: give --member and --new: %w", errUsage)
	}
	return withArray(ctx, o, args, false, func(a *raid.Array) error {
		d, err := volume.Open(ctx, o.with, volume.Options{})
		if err != nil {
			return err
		}
		if err := a.ReplaceMember(o.member, d, o.with); err != nil {
			return err
		}
		err = waitRebuild(ctx, o, a)
		fmt.Fprint(o.out, a.Status())
		return err
	})
}

func runRaidCheck(ctx context.Context, o *raidOptions, args []string) error {
	return runRaidScrub(ctx, o, args, false)
}

func runRaidRepair(ctx context.Context, o *raidOptions, args []string) error {
	return runRaidScrub(ctx, o, args, true)
}

func runRaidScrub(ctx context.Context, o *raidOptions, args []string, repair bool) error {
	return withArray(ctx, o, args, !repair, func(a *raid.Array) error {
		res, err := a.Check(ctx, repair)
		if err != nil {
			return err
		}
		fmt.Fprintf(o.out, "mismatches: %d\nrepaired: %d\nlocated (raid6): %d\nskipped (degraded): %d\n",
			res.Mismatches, res.Repaired, res.Located, res.Skipped)
		if res.Mismatches > 0 && !repair {
			return fmt.Errorf("raid check: %d mismatches (run repair)", res.Mismatches)
		}
		return nil
	})
}
