package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
	"github.com/rampart-storage/rampart/internal/units"
)

// addFSToolCommands adds checkfile and dirinfo to the fs group: MooseFS's
// mfscheckfile and mfsdirinfo, computed from the master's chunk map.
func addFSToolCommands(fs *cobra.Command, o *fsOptions) {
	fs.AddCommand(&cobra.Command{
		Use: "checkfile PATH...", Short: "Count each file's chunks by number of valid copies", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFSCheckfile(cmd.Context(), cmd.OutOrStdout(), o, args)
		},
	}, &cobra.Command{
		Use: "dirinfo PATH...", Short: "Summarise trees: inodes, directories, files, chunks, length, size, realsize", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFSDirinfo(cmd.Context(), cmd.OutOrStdout(), o, args)
		},
	})
}

// checkfileResult counts a file's chunks by their number of valid copies.
type checkfileResult struct {
	Path   string         `json:"path"`
	Chunks int            `json:"chunks"`
	Goal   int            `json:"goal"`
	Copies map[string]int `json:"copies"` // number of copies -> chunks
}

func runFSCheckfile(ctx context.Context, w io.Writer, o *fsOptions, paths []string) error {
	c, err := client.Dial(ctx, o.master)
	if err != nil {
		return err
	}
	defer c.Close()
	var out []checkfileResult
	for _, p := range paths {
		a, err := c.Resolve(ctx, p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if !a.IsRegular() {
			return fmt.Errorf("checkfile %s: not a regular file: %w", p, syscall.EINVAL)
		}
		r := checkfileResult{Path: p, Goal: int(a.Goal), Copies: map[string]int{}}
		for idx := uint32(0); uint64(idx)*proto.ChunkSize < a.Size; idx++ {
			loc, err := c.ChunkLocation(ctx, a.Ino, idx)
			if err != nil {
				return fmt.Errorf("%s chunk %d: %w", p, idx, err)
			}
			if loc.ID == 0 {
				continue // a hole has no chunk
			}
			r.Chunks++
			r.Copies[strconv.Itoa(len(loc.Servers))]++
		}
		out = append(out, r)
	}
	if o.json {
		return printJSON(w, out)
	}
	for _, r := range out {
		fmt.Fprintf(w, "%s:\n", r.Path)
		keys := make([]int, 0, len(r.Copies))
		for k := range r.Copies {
			n, _ := strconv.Atoi(k)
			keys = append(keys, n)
		}
		sort.Ints(keys)
		for _, k := range keys {
			what := fmt.Sprintf("chunks with %d copies:", k)
			if k == 0 {
				what = "chunks with no copies (missing):"
			} else if k == 1 {
				what = "chunks with 1 copy:"
			}
			fmt.Fprintf(w, " %-32s %10d\n", what, r.Copies[strconv.Itoa(k)])
		}
		if r.Chunks == 0 {
			fmt.Fprintf(w, " no chunks\n")
		}
	}
	return nil
}

// dirinfoResult summarises a tree as mfsdirinfo does. Length is the sum of
// file sizes; size counts, for one copy of each chunk, the part of the file
// it holds rounded up to the chunkserver's 64 KiB blocks; realsize counts
// every valid copy. A hard-linked inode counts once.
type dirinfoResult struct {
	Path        string `json:"path"`
	Inodes      int    `json:"inodes"`
	Directories int    `json:"directories"`
	Files       int    `json:"files"`
	Chunks      int    `json:"chunks"`
	Length      uint64 `json:"length"`
	Size        uint64 `json:"size"`
	RealSize    uint64 `json:"realsize"`
}

// chunkBlock is the chunkservers' CRC block: the unit a chunk grows by.
const chunkBlock = 64 << 10

func runFSDirinfo(ctx context.Context, w io.Writer, o *fsOptions, paths []string) error {
	c, err := client.Dial(ctx, o.master)
	if err != nil {
		return err
	}
	defer c.Close()
	var out []dirinfoResult
	for _, p := range paths {
		a, err := c.Resolve(ctx, p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		r := dirinfoResult{Path: p}
		seen := map[uint64]bool{}
		if err := dirinfoWalk(ctx, c, p, a, seen, &r); err != nil {
			return err
		}
		out = append(out, r)
	}
	if o.json {
		return printJSON(w, out)
	}
	for _, r := range out {
		fmt.Fprintf(w, "%s:\n", r.Path)
		fmt.Fprintf(w, " inodes:       %12d\n", r.Inodes)
		fmt.Fprintf(w, "  directories: %12d\n", r.Directories)
		fmt.Fprintf(w, "  files:       %12d\n", r.Files)
		fmt.Fprintf(w, " chunks:       %12d\n", r.Chunks)
		for _, v := range []struct {
			name string
			n    uint64
		}{{"length", r.Length}, {"size", r.Size}, {"realsize", r.RealSize}} {
			fmt.Fprintf(w, " %-13s %12d (%s)\n", v.name+":", v.n, units.FormatSize(int64(v.n)))
		}
	}
	return nil
}

func dirinfoWalk(ctx context.Context, c *client.Client, path string, a *proto.Attr, seen map[uint64]bool, r *dirinfoResult) error {
	if seen[a.Ino] {
		return nil
	}
	seen[a.Ino] = true
	r.Inodes++
	switch {
	case a.IsDir():
		r.Directories++
		ents, err := c.Readdir(ctx, a.Ino)
		if err != nil {
			return fmt.Errorf("readdir %s: %w", path, err)
		}
		for _, e := range ents {
			ca, err := c.Getattr(ctx, e.Ino)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", path, e.Name, err)
			}
			if err := dirinfoWalk(ctx, c, path+"/"+e.Name, ca, seen, r); err != nil {
				return err
			}
		}
	case a.IsRegular():
		r.Files++
		r.Length += a.Size
		for idx := uint32(0); uint64(idx)*proto.ChunkSize < a.Size; idx++ {
			loc, err := c.ChunkLocation(ctx, a.Ino, idx)
			if err != nil {
				return fmt.Errorf("%s chunk %d: %w", path, idx, err)
			}
			if loc.ID == 0 {
				continue
			}
			span := min(a.Size-uint64(idx)*proto.ChunkSize, proto.ChunkSize)
			span = (span + chunkBlock - 1) / chunkBlock * chunkBlock
			r.Chunks++
			r.Size += span
			r.RealSize += span * uint64(len(loc.Servers))
		}
	}
	return nil
}
