package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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
	bitmap      string
	bitmapChunk string
	size        string
	member      string // fail, remove, replace: the member acted on
	with        string // add, replace: the new member
	minSpeed    string
	maxSpeed    string
	dropStale   bool
	json        bool // status, detail: print the JSON report
	detail      bool // status: print the detail form
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

The management commands (status, detail, fail, remove, add, replace, check, repair)
find the array from the members' superblocks. When a process serves it (rampart
target serve or nbd serve with a raid: volume), they act through that process's
control socket ($RAMPART_RUN_DIR/raid/UUID.sock, default /run/rampart/raid), and add
or replace rebuild in the background there: poll status. Otherwise they assemble the
array themselves (refusing, with its pid, an array another process holds), act, and
stop it cleanly; add and replace then rebuild in the foreground.`,
	}
	sub := func(use, short string, run func(context.Context, *raidOptions, *cobra.Command, []string) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.MinimumNArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				o.out = c.OutOrStdout()
				return run(c.Context(), o, c, args)
			}}
	}
	create := sub("create --level N [--chunk 64K] MEMBER...", "Write superblocks to new members", runRaidCreate)
	create.Flags().IntVar(&o.level, "level", 5, "RAID level: 0, 1, 5, 6 or 10")
	create.Flags().StringVar(&o.chunk, "chunk", "64K", "chunk size")
	create.Flags().StringVar(&o.name, "name", "", "array name (default: from the UUID)")
	create.Flags().BoolVar(&o.force, "force", false, "create over members that carry a superblock")
	create.Flags().StringVar(&o.journal, "journal", "full", "RAID-5/6 write hole: full (journal every stripe update on the members), cow (full-stripe writes go to spare stripes and the stripe map follows, with no second copy; partial ones are journaled; not the default while a known RAID-6 bug after a double failure and crashes is open), none (hole open: a crash while degraded can corrupt data; an unclean stop resyncs all parity)")
	create.Flags().StringVar(&o.bitmap, "bitmap", "internal", "write-intent bitmap (levels 1, 5, 6, 10): internal (resync only dirty regions after a crash or when a member comes back) or none")
	create.Flags().StringVar(&o.bitmapChunk, "bitmap-chunk", "64M", "member bytes per bitmap bit")
	create.Flags().IntSliceVar(&o.writeMostly, "write-mostly", nil, "RAID-1/10: indexes of members reads avoid")
	create.Flags().StringVar(&o.size, "size", "", "create missing member files of this size")
	examine := sub("examine MEMBER...", "Print what each member's superblock says", runRaidExamine)
	detail := sub("detail [--json] MEMBER...", "Describe the array", runRaidDetail)
	status := sub("status [--json] MEMBER...", "Print a /proc/mdstat-style status", runRaidStatus)
	for _, c := range []*cobra.Command{detail, status} {
		c.Flags().BoolVar(&o.json, "json", false, `print JSON: {"level","raid_devices","active","degraded","rebuilding","progress" (0..1),"members",...}`)
	}
	assemble := sub("assemble MEMBER...", "Assemble (replaying the journal, resyncing, rebuilding onto spares) and stop cleanly", runRaidAssemble)
	fail := sub("fail --member M MEMBER...", "Mark a member faulty", runRaidFail)
	remove := sub("remove --member M MEMBER...", "Take a faulty member or spare out of the array", runRaidRemove)
	add := sub("add --new M MEMBER...", "Add a member: rebuilt into a missing role (a member that was there before: only the regions the bitmap marks dirty), or a spare", runRaidAdd)
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

func runRaidCreate(ctx context.Context, o *raidOptions, _ *cobra.Command, args []string) error {
	switch o.journal {
	case "cow", "full", "none":
	default:
		return fmt.Errorf("raid create: --journal %q: want cow, full or none: %w", o.journal, errUsage)
	}
	chunk, err := units.ParseSize(o.chunk)
	if err != nil {
		return fmt.Errorf("raid create: --chunk: %w: %w", err, errUsage)
	}
	if o.bitmap != "internal" && o.bitmap != "none" {
		return fmt.Errorf("raid create: --bitmap %q: want internal or none: %w", o.bitmap, errUsage)
	}
	bitmapChunk, err := units.ParseSize(o.bitmapChunk)
	if err != nil {
		return fmt.Errorf("raid create: --bitmap-chunk: %w: %w", err, errUsage)
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
		NoJournal: o.journal == "none", CoW: o.journal == "cow" && (o.level == 5 || o.level == 6), WriteMostly: o.writeMostly, NoBitmap: o.bitmap == "none", BitmapChunk: bitmapChunk})
	if err != nil {
		return fmt.Errorf("raid %w", err)
	}
	fmt.Fprintf(o.out, "created raid%d of %d members\n", o.level, len(args))
	return nil
}

func runRaidExamine(ctx context.Context, o *raidOptions, _ *cobra.Command, args []string) error {
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

// withArray assembles the array from args, runs fn and stops the array cleanly. It
// takes the array's lock: an array another process serves is refused, naming it.
func withArray(ctx context.Context, o *raidOptions, args []string, readOnly bool, fn func(*raid.Array) error) error {
	ms, err := raid.OpenMembers(ctx, raidSpecs(args), readOnly)
	if err != nil {
		return err
	}
	opts := raid.AssembleOptions{ReadOnly: readOnly, DropStale: o.dropStale, NoAutoRebuild: readOnly, Lock: true,
		Open: raid.OpenFunc(readOnly), Logger: slog.Default()}
	if o.minSpeed != "" {
		if opts.MinSpeed, err = units.ParseSize(o.minSpeed); err != nil {
			raid.CloseMembers(ms)
			return fmt.Errorf("--min-speed: %w: %w", err, errUsage)
		}
	}
	if o.maxSpeed != "" {
		if opts.MaxSpeed, err = units.ParseSize(o.maxSpeed); err != nil {
			raid.CloseMembers(ms)
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

// manage carries out req on the array of args: through the control socket of the
// process serving it, or, when none does, on the array assembled here (taking its
// lock) and stopped cleanly afterwards; add and replace then rebuild in the
// foreground. A served array rebuilds in the background: poll `status`.
func manage(ctx context.Context, o *raidOptions, c *cobra.Command, args []string, req raid.Request, readOnly bool) error {
	u, devs, err := raid.ArrayOf(ctx, raidSpecs(args))
	if err != nil {
		return fmt.Errorf("raid %s: %w", req.Op, err)
	}
	if req.Member != "" {
		if du, ok := devs[req.Member]; ok {
			req.MemberUUID = du.String()
		} else if _, md, err := raid.ArrayOf(ctx, []string{req.Member}); err == nil {
			req.MemberUUID = md[req.Member].String()
		}
	}
	if req.New != "" && volume.Kind(req.New) == "" {
		if abs, err := filepath.Abs(req.New); err == nil {
			req.New = abs // the serving process may run elsewhere
		}
	}
	for _, f := range []struct {
		name string
		dst  **int64
	}{{"min-speed", &req.MinSpeed}, {"max-speed", &req.MaxSpeed}} {
		if fl := c.Flags().Lookup(f.name); fl != nil && fl.Changed {
			v, err := units.ParseSize(fl.Value.String())
			if err != nil {
				return fmt.Errorf("--%s: %w: %w", f.name, err, errUsage)
			}
			*f.dst = &v
		}
	}
	resp, err := raid.Call(ctx, u, req)
	if err == nil {
		return o.report(req, resp)
	}
	if !errors.Is(err, raid.ErrNotServed) {
		return err
	}
	return withArray(ctx, o, args, readOnly, func(a *raid.Array) error {
		resp := a.Handle(ctx, req)
		if resp.OK && (req.Op == raid.OpAdd || req.Op == raid.OpReplace) {
			if err := waitRebuild(ctx, o, a); err != nil {
				return err
			}
			rep := a.Status().Report()
			resp.Status = &rep
		}
		return o.report(req, resp)
	})
}

// report prints the outcome of a management request.
func (o *raidOptions) report(req raid.Request, resp raid.Response) error {
	if o.json && resp.Status != nil {
		enc := json.NewEncoder(o.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(resp.Status); err != nil {
			return err
		}
	}
	st := resp.Status
	switch {
	case o.json || st == nil:
	case req.Op == raid.OpStatus && o.detail:
		printDetail(o.out, st)
	case resp.Scrub != nil:
		res := resp.Scrub
		fmt.Fprintf(o.out, "mismatches: %d\nrepaired: %d\nlocated (raid6): %d\nskipped (degraded): %d\n",
			res.Mismatches, res.Repaired, res.Located, res.Skipped)
	default:
		fmt.Fprint(o.out, st.Mdstat)
	}
	where := "offline"
	if st != nil && st.ServedBy != 0 {
		where = fmt.Sprintf("served by pid %d", st.ServedBy)
	}
	if !resp.OK {
		return fmt.Errorf("raid %s (%s): %s", req.Op, where, resp.Error)
	}
	if res := resp.Scrub; res != nil && res.Mismatches > 0 && req.Op == raid.OpCheck {
		return fmt.Errorf("raid check (%s): %d mismatches (run repair)", where, res.Mismatches)
	}
	return nil
}

func printDetail(w io.Writer, st *raid.Report) {
	state := "clean"
	if !st.Clean {
		state = "dirty"
	}
	if st.Degraded {
		state += ", degraded"
	}
	if st.Rebuilding {
		state += ", recovering"
	}
	if st.Failed {
		state += ", FAILED"
	}
	fmt.Fprintf(w, "           Name : %s\n           UUID : %s\n     Raid Level : raid%d\n     Array Size : %s\n",
		st.Name, st.UUID, st.Level, units.FormatSize(st.SizeBytes))
	fmt.Fprintf(w, "   Raid Devices : %d\n Active Devices : %d\n     Chunk Size : %s\n          State : %s\n         Events : %d\n",
		st.RaidDevices, st.Active, units.FormatSize(st.ChunkBytes), state, st.Events)
	switch st.WriteHole {
	case "cow":
		fmt.Fprintf(w, "     Write Hole : copy-on-write full stripes (%d spare stripes, %d free, %d waiting for a flush), partial ones journaled\n",
			st.CowSpare, st.CowFree, st.CowUnsettled)
	case "journal":
		fmt.Fprintf(w, "     Write Hole : journal\n")
	case "none":
		fmt.Fprintf(w, "     Write Hole : none (open: resync after an unclean stop)\n")
	}
	if st.ServedBy != 0 {
		fmt.Fprintf(w, "      Served by : pid %d\n", st.ServedBy)
	}
	if r := st.Recovery; r != nil {
		fmt.Fprintf(w, " Rebuild Status : %.1f%% complete (%s)\n", st.Progress*100, r.Member)
	}
	fmt.Fprintf(w, "\n   Role   State        Member\n")
	for _, m := range st.Members {
		role := fmt.Sprint(m.Role)
		if m.Role < 0 {
			role = "spare"
		}
		flags := ""
		if m.WriteMostly {
			flags = " (write-mostly)"
		}
		fmt.Fprintf(w, "   %-6s %-12s %s%s\n", role, m.State, m.Name, flags)
	}
}

func runRaidDetail(ctx context.Context, o *raidOptions, c *cobra.Command, args []string) error {
	o.detail = true
	return manage(ctx, o, c, args, raid.Request{Op: raid.OpStatus}, true)
}

func runRaidStatus(ctx context.Context, o *raidOptions, c *cobra.Command, args []string) error {
	return manage(ctx, o, c, args, raid.Request{Op: raid.OpStatus}, true)
}

func runRaidAssemble(ctx context.Context, o *raidOptions, c *cobra.Command, args []string) error {
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
			if !o.json {
				fmt.Fprint(o.out, a.Status())
			}
		}
	}
}

func runRaidFail(ctx context.Context, o *raidOptions, c *cobra.Command, args []string) error {
	if o.member == "" {
		return fmt.Errorf("raid fail: give --member: %w", errUsage)
	}
	return manage(ctx, o, c, args, raid.Request{Op: raid.OpFail, Member: o.member, Force: o.force}, false)
}

func runRaidRemove(ctx context.Context, o *raidOptions, c *cobra.Command, args []string) error {
	if o.member == "" {
		return fmt.Errorf("raid remove: give --member: %w", errUsage)
	}
	return manage(ctx, o, c, args, raid.Request{Op: raid.OpRemove, Member: o.member, Force: o.force}, false)
}

func runRaidAdd(ctx context.Context, o *raidOptions, c *cobra.Command, args []string) error {
	if o.with == "" {
		return fmt.Errorf("raid add: give --new: %w", errUsage)
	}
	return manage(ctx, o, c, args, raid.Request{Op: raid.OpAdd, New: o.with}, false)
}

func runRaidReplace(ctx context.Context, o *raidOptions, c *cobra.Command, args []string) error {
	if o.with == "" || o.member == "" {
		return fmt.Errorf("raid replace: give --member and --new: %w", errUsage)
	}
	return manage(ctx, o, c, args, raid.Request{Op: raid.OpReplace, Member: o.member, New: o.with}, false)
}

func runRaidCheck(ctx context.Context, o *raidOptions, c *cobra.Command, args []string) error {
	return manage(ctx, o, c, args, raid.Request{Op: raid.OpCheck}, true)
}

func runRaidRepair(ctx context.Context, o *raidOptions, c *cobra.Command, args []string) error {
	return manage(ctx, o, c, args, raid.Request{Op: raid.OpRepair}, false)
}
