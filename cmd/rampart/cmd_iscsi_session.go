package main

// iscsi logout and iscsi session: they read the status files that attach and login
// processes publish (see docs/decisions/2026-11-27-iscsi-sessions-in-processes.md).

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/multipath"
)

type iscsiLogoutOptions struct {
	target, portal, statusDir string
	all                       bool
	timeout                   time.Duration
}

func newISCSILogoutCmd() *cobra.Command {
	o := &iscsiLogoutOptions{}
	c := &cobra.Command{
		Use:   "logout (-T IQN [-p PORTAL] | --all)",
		Short: "Log out of a target's sessions (all, or those through one portal)",
		Long: `logout finds, in --status-dir, the processes (login or attach) whose maps have a session
to the target (through PORTAL with -p) and logs those sessions out:

  - with -p, when the process also holds sessions through other portals, it is asked
    (a request file in --status-dir) to log out of that portal only: each session
    through it sends its Logout and closes, its path leaves the multipath map, and the
    LUN stays attached over the other paths;
  - otherwise (no -p, --all, or the last portal of the process) the process is
    stopped: it logs out of every session and takes its FUSE file or NBD export away.
    Unmount what uses the LUN first: I/O to it fails once it is logged out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runISCSILogout(cmd.OutOrStdout(), o) },
	}
	c.Flags().StringVarP(&o.target, "targetname", "T", "", "the target's IQN")
	c.Flags().StringVarP(&o.portal, "portal", "p", "", "only sessions through this portal (HOST[:PORT])")
	c.Flags().BoolVar(&o.all, "all", false, "log out of every session")
	c.Flags().StringVar(&o.statusDir, "status-dir", defaultStatusDir, "where sessions publish their state")
	c.Flags().DurationVar(&o.timeout, "timeout", 15*time.Second, "how long to wait for each process to log out")
	return c
}

// sessionRef is one session as `iscsi session` numbers it.
type sessionRef struct {
	sid  int
	st   multipath.Status
	path multipath.PathStatus
}

// listSessions numbers every published session (one per path of every map). A map's
// paths keep their numbers when some of them are logged out: each map takes as many
// numbers as it was opened with paths, and a path the number of its place.
func listSessions(dir string) ([]sessionRef, error) {
	sts, err := multipath.ReadStatusFiles(dir)
	if err != nil {
		return nil, err
	}
	var out []sessionRef
	base := 0
	for _, st := range sts {
		for k, p := range st.Paths {
			place := k
			if st.Configured > 0 {
				place = p.Index
			}
			out = append(out, sessionRef{sid: base + place + 1, st: st, path: p})
		}
		base += max(st.Configured, len(st.Paths))
	}
	return out, nil
}

func (s sessionRef) where() string {
	return fmt.Sprintf("[sid: %d, target: %s, portal: %s]", s.sid, s.path.Session.Target, portalTag(s.path))
}

func runISCSILogout(out io.Writer, o *iscsiLogoutOptions) error {
	if o.all == (o.target != "") {
		return fmt.Errorf("logout: give -T IQN or --all: %w", errUsage)
	}
	portal := ""
	if o.portal != "" {
		portal = initiator.NewNode("x", o.portal, 1).Portal
	}
	sessions, err := listSessions(o.statusDir)
	if err != nil {
		return err
	}
	matched, held := map[int][]sessionRef{}, map[int][]sessionRef{}
	var pids []int
	for _, s := range sessions {
		pid := s.st.PID
		if _, seen := held[pid]; !seen {
			pids = append(pids, pid)
		}
		held[pid] = append(held[pid], s)
		if o.all || s.path.Session.Target == o.target && (portal == "" || s.path.Session.Portal == portal) {
			matched[pid] = append(matched[pid], s)
		}
	}
	if len(matched) == 0 {
		return errors.New("logout: no matching sessions")
	}
	var errs []error
	for _, pid := range pids {
		ss := matched[pid]
		if len(ss) == 0 {
			continue
		}
		var err error
		if len(ss) < len(held[pid]) {
			// Other sessions of the process stay: log out of these only.
			for _, s := range ss {
				fmt.Fprintf(out, "Logging out of session %s\n", s.where())
			}
			err = requestLogout(pid, ss[0].st, o.target, portal, o)
		} else {
			ss = held[pid]
			for _, s := range ss {
				fmt.Fprintf(out, "Logging out of session %s\n", s.where())
			}
			err = stopSessionProcess(pid, ss[0].st, o)
		}
		for _, s := range ss {
			if err != nil {
				fmt.Fprintf(out, "Logout of %s: failed: %v\n", s.where(), err)
			} else {
				fmt.Fprintf(out, "Logout of %s: successful\n", s.where())
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stopSessionProcess signals the process that published st and waits for its status
// files to go. A status file whose process is gone is stale and removed.
func stopSessionProcess(pid int, st multipath.Status, o *iscsiLogoutOptions) error {
	if pid <= 0 {
		return fmt.Errorf("map %s names no process", st.Name)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		multipath.RemoveStatusFile(o.statusDir, st.Name)
		return nil // the process is gone: nothing is logged in any more
	}
	args := strings.Split(string(cmdline), "\x00")
	if !slices.Contains(args, "attach") && !slices.Contains(args, "login") {
		return fmt.Errorf("process %d is not a rampart attach or login (%q): not signalling it", pid, strings.Join(args, " "))
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal process %d: %w", pid, err)
	}
	deadline := time.Now().Add(o.timeout)
	for time.Now().Before(deadline) {
		left := false
		sts, _ := multipath.ReadStatusFiles(o.statusDir)
		for _, s := range sts {
			left = left || s.PID == pid
		}
		if !left {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("process %d still holds its sessions after %v", pid, o.timeout)
}

type iscsiSessionOptions struct {
	statusDir string
	level     int
	json      bool
}

func newISCSISessionCmd() *cobra.Command {
	o := &iscsiSessionOptions{}
	c := &cobra.Command{
		Use:   "session [-P 0|1|2|3] [--json]",
		Short: "Show the sessions of running attach and login processes (iscsiadm -m session)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sessions, err := listSessions(o.statusDir)
			if err != nil {
				return err
			}
			if o.json {
				type js struct {
					SID     int                     `json:"sid"`
					Map     string                  `json:"map"`
					WWID    string                  `json:"wwid"`
					LUN     uint64                  `json:"lun"`
					Device  string                  `json:"device"`
					PID     int                     `json:"pid"`
					Path    multipath.PathState     `json:"path_state"`
					Session initiator.SessionStatus `json:"session"`
				}
				var out []js
				for _, s := range sessions {
					out = append(out, js{s.sid, s.st.Name, s.st.WWID, s.path.LUN, s.st.Device, s.st.PID, s.path.State, s.path.Session})
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			if len(sessions) == 0 {
				return errors.New("no active sessions")
			}
			printSessions(cmd.OutOrStdout(), sessions, o.level)
			return nil
		},
	}
	c.Flags().IntVarP(&o.level, "print", "P", 0, "detail: 0 one line a session, 1 states, 2 timeouts and parameters, 3 attached LUNs")
	c.Flags().StringVar(&o.statusDir, "status-dir", defaultStatusDir, "where sessions publish their state")
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}

// connState and iscsidState are iscsiadm's words for a session's state.
func connState(s string) (conn, internal string) {
	switch s {
	case initiator.StateLoggedIn:
		return "LOGGED IN", "NO CHANGE"
	case initiator.StateFailed:
		return "TRANSPORT WAIT", "REOPEN"
	}
	return "FREE", "NO CHANGE"
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// printSessions prints sessions as iscsiadm -m session -P level does.
func printSessions(w io.Writer, sessions []sessionRef, level int) {
	if level <= 0 {
		for _, s := range sessions {
			fmt.Fprintf(w, "tcp: [%d] %s %s (non-flash)\n", s.sid, portalTag(s.path), s.path.Session.Target)
		}
		return
	}
	lastTarget := ""
	for _, s := range sessions {
		ss := s.path.Session
		if ss.Target != lastTarget {
			fmt.Fprintf(w, "Target: %s (non-flash)\n", ss.Target)
			lastTarget = ss.Target
		}
		fmt.Fprintf(w, "\tCurrent Portal: %s\n\tPersistent Portal: %s\n", portalTag(s.path), portalTag(s.path))
		section := func(name string) {
			stars := strings.Repeat("*", len(name))
			fmt.Fprintf(w, "\t\t%s\n\t\t%s\n\t\t%s\n", stars, name, stars)
		}
		section("Interface:")
		conn, internal := connState(ss.State)
		fmt.Fprintf(w, "\t\tIface Name: default\n\t\tIface Transport: tcp\n\t\tIface Initiatorname: %s\n", s.st.Initiator)
		fmt.Fprintf(w, "\t\tSID: %d\n\t\tISID: %s\n\t\tTSIH: %d\n", s.sid, ss.ISID, ss.TSIH)
		fmt.Fprintf(w, "\t\tiSCSI Connection State: %s\n\t\tiSCSI Session State: %s\n\t\tInternal iscsid Session State: %s\n", conn, ss.State, internal)
		fmt.Fprintf(w, "\t\tState Since: %s\n\t\tLogins: %d\n", ss.Since.Format(time.RFC3339), ss.Logins)
		if ss.LastError != "" {
			fmt.Fprintf(w, "\t\tLast Error: %s\n", ss.LastError)
		}
		fmt.Fprintf(w, "\t\tHeld By: process %d (%s)\n", s.st.PID, s.st.Origin)
		if level >= 2 {
			section("Timeouts:")
			recovery := fmt.Sprintf("%g", ss.ReplacementTimeout)
			if ss.ReplacementTimeout == 0 {
				recovery += " (fast_io_fail 0: the map sends a dropped path's commands to another path at once)"
			}
			fmt.Fprintf(w, "\t\tRecovery Timeout: %s\n\t\tLogin Timeout: %g\n\t\tNOP-Out Interval: %g\n\t\tNOP-Out Timeout: %g\n",
				recovery, ss.LoginTimeout, ss.NopInterval, ss.NopTimeout)
			section("Negotiated iSCSI params:")
			if ss.State != initiator.StateLoggedIn {
				fmt.Fprintf(w, "\t\t(not logged in)\n")
			} else {
				fmt.Fprintf(w, "\t\tHeaderDigest: %s\n\t\tDataDigest: %s\n", ss.HeaderDigest, ss.DataDigest)
				fmt.Fprintf(w, "\t\tMaxRecvDataSegmentLength: %d\n\t\tMaxXmitDataSegmentLength: %d\n", ss.MaxRecvDataSegmentLength, ss.MaxXmitDataSegmentLength)
				fmt.Fprintf(w, "\t\tFirstBurstLength: %d\n\t\tMaxBurstLength: %d\n", ss.FirstBurstLength, ss.MaxBurstLength)
				fmt.Fprintf(w, "\t\tImmediateData: %s\n\t\tInitialR2T: %s\n\t\tMaxOutstandingR2T: %d\n", yesNo(ss.ImmediateData), yesNo(ss.InitialR2T), ss.MaxOutstandingR2T)
			}
		}
		if level >= 3 {
			section("Attached LUNs:")
			alua := ""
			if s.path.ALUA != "" {
				alua = " alua=" + s.path.ALUA
			}
			fmt.Fprintf(w, "\t\tLun: %d\tState: %s\n", s.path.LUN, map[bool]string{true: "running", false: "blocked"}[ss.State == initiator.StateLoggedIn])
			fmt.Fprintf(w, "\t\t\tMap: %s (%s)\tPath: %s prio=%d%s\n", s.st.Name, s.st.WWID, s.path.State, s.path.Prio, alua)
			fmt.Fprintf(w, "\t\t\tAttached as: %s\n", s.st.Device)
		}
	}
}
