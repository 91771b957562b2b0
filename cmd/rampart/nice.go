package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// defaultNice is the scheduling priority the DFS daemons (master, chunkserver, server,
// mount) give themselves: -19, as MooseFS's do (NICE_LEVEL in mfsmaster.cfg and
// mfschunkserver.cfg, -o mfsnice for mfsmount). A storage daemon that waits for a CPU
// behind user work makes every client of the file system wait with it.
const defaultNice = -19

// addNiceFlag adds --nice to a daemon's command.
func addNiceFlag(cmd *cobra.Command, nice *int) {
	cmd.Flags().IntVar(nice, "nice", defaultNice, "nice level to run with (-20..19); raising the priority "+
		"(a negative value) needs root or CAP_SYS_NICE, and the daemon runs at its inherited level if it cannot")
}

// applyNice sets the nice level of every thread of the process (on Linux a nice level
// belongs to a thread, and threads created later inherit their creator's). It is best
// effort: without the privilege to raise the priority the process keeps the level it
// inherited and says so.
func applyNice(log *slog.Logger, nice int) error {
	if nice < -20 || nice > 19 {
		return fmt.Errorf("--nice %d: want -20..19: %w", nice, errUsage)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		log.Warn("nice level not set", "nice", nice, "err", err)
		return nil
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil {
			cur, _ := unix.Getpriority(unix.PRIO_PROCESS, 0)
			log.Info("running at the inherited nice level: setting it needs root or CAP_SYS_NICE",
				"want", nice, "nice", 20-cur, "err", err)
			return nil
		}
	}
	log.Debug("nice level set", "nice", nice)
	return nil
}
