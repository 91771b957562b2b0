package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/multipath"
	"github.com/rampart-storage/rampart/internal/testutil"
)

// syncBuffer is an output buffer written by a background command.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestISCSIDiscoverLoginSession: discover records a node per portal, login (in the
// foreground) logs in through the records and attaches the target's LUN, and session
// shows it at every detail level, as iscsiadm does.
func TestISCSIDiscoverLoginSession(t *testing.T) {
	dir := t.TempDir()
	u, err := initiator.ParseURL(testutil.StartTarget(t, 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	nodes, status := filepath.Join(dir, "nodes"), filepath.Join(dir, "status")
	out, err := runRoot(t, "iscsi", "discover", u.Portal, "--node-dir", nodes)
	if err != nil || !strings.Contains(out, u.Target) {
		t.Fatalf("discover: %q, %v", out, err)
	}
	out, err = runRoot(t, "iscsi", "node", "--node-dir", nodes)
	if want := u.Portal + ",1 " + u.Target + "\n"; err != nil || out != want {
		t.Errorf("iscsi node: %q, %v; want %q", out, err, want)
	}

	o := &iscsiLoginOptions{attachOptions: *attachDefaults(dir), target: u.Target, nodeDir: nodes, lun: -1}
	o.policy = "failover"
	ctx, cancel := context.WithCancel(t.Context())
	var loginOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- runISCSILogin(ctx, &loginOut, &globalOptions{}, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("login: %v", err)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(loginOut.String(), "successful") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if want := "Login to [iface: default, target: " + u.Target + ", portal: " + u.Portal + ",1]: successful"; !strings.Contains(loginOut.String(), want) {
		t.Fatalf("login printed %q, want %q", loginOut.String(), want)
	}

	out, err = runRoot(t, "iscsi", "session", "--status-dir", status)
	if want := "tcp: [1] " + u.Portal + ",1 " + u.Target + " (non-flash)\n"; err != nil || out != want {
		t.Errorf("session: %q, %v; want %q", out, err, want)
	}
	out, err = runRoot(t, "iscsi", "session", "-P", "3", "--status-dir", status)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Target: " + u.Target, "iSCSI Connection State: LOGGED IN", "iSCSI Session State: LOGGED_IN",
		"Recovery Timeout: 0 (fast_io_fail", "NOP-Out Interval: 5", "NOP-Out Timeout: 10", // NOP-Out: the node record's iscsid.conf values; recovery: the map's fast_io_fail 0
		"MaxRecvDataSegmentLength: 262144", "ImmediateData: Yes", "InitialR2T: No",
		"Lun: 0\tState: running", "Map: mpatha (3", "Attached as: nbd://", "(iscsi login)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("session -P 3 lacks %q:\n%s", want, out)
		}
	}
}

// TestISCSILogoutSafety: logout removes the status of a process that is gone, and
// never signals a process that is not a rampart attach or login.
func TestISCSILogoutSafety(t *testing.T) {
	dir := t.TempDir()
	st := multipath.Status{Name: "mpathz", WWID: "3600a", PID: 1 << 22, // beyond pid_max: gone
		Paths: []multipath.PathStatus{{URL: "iscsi://h:3260/iqn.x:gone/0", Session: initiator.SessionStatus{Target: "iqn.x:gone", Portal: "h:3260"}}}}
	if err := multipath.WriteStatusFile(dir, st); err != nil {
		t.Fatal(err)
	}
	mine := st
	mine.Name, mine.PID = "mpathy", os.Getpid()
	mine.Paths = []multipath.PathStatus{{Session: initiator.SessionStatus{Target: "iqn.x:mine", Portal: "h:3260"}}}
	if err := multipath.WriteStatusFile(dir, mine); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runISCSILogout(&out, &iscsiLogoutOptions{target: "iqn.x:gone", statusDir: dir, timeout: time.Second}); err != nil {
		t.Errorf("logout of a gone process: %v", err)
	}
	if !strings.Contains(out.String(), "Logout of [sid: 2, target: iqn.x:gone, portal: h:3260,1]: successful") {
		t.Errorf("logout printed %q", out.String())
	}
	out.Reset()
	err := runISCSILogout(&out, &iscsiLogoutOptions{target: "iqn.x:mine", statusDir: dir, timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "not signalling") {
		t.Errorf("logout of a process that is not rampart's: %v, want a refusal", err)
	}
	sts, _ := multipath.ReadStatusFiles(dir)
	if len(sts) != 1 || sts[0].Name != "mpathy" {
		t.Errorf("status files left: %+v, want only mpathy", sts)
	}
}
