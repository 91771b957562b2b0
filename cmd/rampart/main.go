// Command rampart is highly-available storage for ordinary Linux machines in one
// binary: RAID volumes, an iSCSI target, and a distributed file system.
//
// main only wires the cobra command tree; each subcommand group lives in its own file
// (cmd_*.go), parses flags into an options struct and calls a run function.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// errUsage marks an error caused by bad command-line input (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "rampart:", err)
	if errors.Is(err, errUsage) {
		os.Exit(2)
	}
	os.Exit(1)
}

// globalOptions are the flags every subcommand shares.
type globalOptions struct {
	verbose bool
}

func (g *globalOptions) logger() *slog.Logger {
	lvl := slog.LevelInfo
	if g.verbose {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:           "rampart",
		Short:         "Highly-available storage on ordinary Linux machines, in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log debug messages")
	root.AddCommand(
		newTargetCmd(g),
		newRaidCmd(g),
		newNBDCmd(g),
		newISCSICmd(g),
		newAttachCmd(g),
		newMultipathCmd(g),
		newDemoCmd(g),
	)
	addDFSCommands(root, g)
	return root
}
