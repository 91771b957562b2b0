package main

// Requests to the process holding a target's sessions: log out of one portal (iscsi
// logout -p) or in to it again (iscsi login). See
// docs/decisions/2026-12-03-initiator-logout-portal-alua-standby.md.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rampart-storage/rampart/internal/multipath"
)

// loginToHolder logs in through the target's node records in the process that
// already holds the target, if one does: a portal whose session that process
// logged out (iscsi logout -p) is logged in again there, and a portal it holds is
// left alone. held is false when no running process holds the target.
func loginToHolder(out io.Writer, o *iscsiLoginOptions) (held bool, err error) {
	if o.target == "" {
		return false, nil // loginNodes says what is missing
	}
	sessions, err := listSessions(o.statusDir)
	if err != nil {
		return false, err
	}
	var holder *multipath.Status
	present := map[string]bool{} // portals the holder has a session through
	for _, s := range sessions {
		if s.path.Session.Target != o.target || !processAlive(s.st.PID) {
			continue
		}
		if holder == nil {
			holder = &s.st
		}
		if s.st.PID == holder.PID {
			present[s.path.Session.Portal] = true
		}
	}
	if holder == nil {
		return false, nil
	}
	nodes, err := loginNodes(o)
	if err != nil {
		return true, err
	}
	var errs []error
	for _, n := range nodes {
		where := fmt.Sprintf("[iface: default, target: %s, portal: %s,%d]", n.Target, n.Portal, n.TPGT)
		if present[n.Portal] {
			fmt.Fprintf(out, "Login to %s: already logged in (process %d)\n", where, holder.PID)
			continue
		}
		fmt.Fprintf(out, "Logging in to %s\n", where)
		ans, err := requestPortal(holder.PID, *holder, portalRequest{Op: "login", Target: n.Target, Portal: n.Portal}, o.statusDir, o.startTimeout)
		if err == nil && ans.Paths == 0 {
			err = fmt.Errorf("process %d holds %s without a path through %s: log out of the target, then log in again to add a portal", holder.PID, n.Target, n.Portal)
		}
		if err != nil {
			fmt.Fprintf(out, "Login to %s: failed: %v\n", where, err)
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "Login to %s: successful\n", where)
	}
	return true, errors.Join(errs...)
}

// portalRequest asks the process holding a target's maps to log out of, or in to
// again, one portal of the target (Op "logout" or "login"); portalReply is its
// answer. Both are files in the status directory, request-PID-N.req and
// request-PID-N.reply, which the process looks for every half second
// (handlePortalRequests).
type portalRequest struct {
	Op     string `json:"op"`
	Target string `json:"target"`
	Portal string `json:"portal"`
}

type portalReply struct {
	Paths int    `json:"paths"` // how many paths were logged out or in
	Error string `json:"error,omitempty"`
}

// requestPortal sends process pid a portalRequest and waits for its answer.
func requestPortal(pid int, st multipath.Status, r portalRequest, dir string, timeout time.Duration) (portalReply, error) {
	if pid <= 0 {
		return portalReply{}, fmt.Errorf("map %s names no process", st.Name)
	}
	if !st.PortalRequests {
		return portalReply{}, fmt.Errorf("process %d (started by an older rampart) cannot log %s one portal: log out of the whole target (without -p), then log in", pid, map[string]string{"login": "in to", "logout": "out of"}[r.Op])
	}
	name := fmt.Sprintf("request-%d-%d", pid, time.Now().UnixNano())
	reqPath, replyPath := filepath.Join(dir, name+".req"), filepath.Join(dir, name+".reply")
	b, err := json.Marshal(r)
	if err != nil {
		return portalReply{}, err
	}
	if err := writeFileAtomic(reqPath, b); err != nil {
		return portalReply{}, fmt.Errorf("%s request to process %d: %w", r.Op, pid, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(replyPath)
		if err == nil {
			os.Remove(replyPath)
			var ans portalReply
			if err := json.Unmarshal(b, &ans); err != nil {
				return ans, fmt.Errorf("answer of process %d to the %s request: %w", pid, r.Op, err)
			}
			if ans.Error != "" {
				return ans, fmt.Errorf("process %d: %s", pid, ans.Error)
			}
			return ans, nil
		}
		if !processAlive(pid) {
			os.Remove(reqPath)
			return portalReply{}, fmt.Errorf("process %d ended before answering the %s request", pid, r.Op)
		}
		time.Sleep(50 * time.Millisecond)
	}
	os.Remove(reqPath)
	return portalReply{}, fmt.Errorf("process %d did not answer the %s request within %v", pid, r.Op, timeout)
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// requestLogout asks process pid to log out of target's sessions through portal.
func requestLogout(pid int, st multipath.Status, target, portal string, o *iscsiLogoutOptions) error {
	if pid > 0 && !processAlive(pid) {
		multipath.RemoveStatusFile(o.statusDir, st.Name)
		return nil // the process is gone: nothing is logged in any more
	}
	_, err := requestPortal(pid, st, portalRequest{Op: "logout", Target: target, Portal: portal}, o.statusDir, o.timeout)
	return err
}

// writeFileAtomic writes b to path through a temporary file and a rename.
func writeFileAtomic(path string, b []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// handlePortalRequests serves the requests addressed to this process in dir: each
// map logs out of (multipath.Map.LogoutPortal) or in to again (LoginPortal) its paths
// through the portal; then update (which rewrites the status files) runs, then the
// answers are written.
func handlePortalRequests(ctx context.Context, log *slog.Logger, dir string, maps []*multipath.Map, update func()) {
	reqs, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("request-%d-*.req", os.Getpid())))
	if len(reqs) == 0 {
		return
	}
	replies := map[string]portalReply{}
	for _, req := range reqs {
		b, err := os.ReadFile(req)
		os.Remove(req)
		if err != nil {
			continue // taken back by its sender
		}
		reply := strings.TrimSuffix(req, ".req") + ".reply"
		var r portalRequest
		if err := json.Unmarshal(b, &r); err != nil {
			replies[reply] = portalReply{Error: fmt.Sprintf("bad request %s: %v", filepath.Base(req), err)}
			continue
		}
		var ans portalReply
		var errs []error
		for _, m := range maps {
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			var n int
			var err error
			switch r.Op {
			case "logout":
				n, err = m.LogoutPortal(rctx, r.Target, r.Portal)
			case "login":
				n, err = m.LoginPortal(rctx, r.Target, r.Portal)
			default:
				err = fmt.Errorf("unknown request %q", r.Op)
			}
			cancel()
			ans.Paths += n
			if err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			ans.Error = err.Error()
		}
		log.Info("portal request", "op", r.Op, "target", r.Target, "portal", r.Portal, "paths", ans.Paths, "error", ans.Error)
		replies[reply] = ans
	}
	update()
	for reply, ans := range replies {
		b, _ := json.Marshal(ans)
		if err := writeFileAtomic(reply, b); err != nil {
			log.Warn("cannot answer a portal request", "file", reply, "err", err)
		}
	}
}
