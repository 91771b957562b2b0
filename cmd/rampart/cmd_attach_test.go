package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/multipath"
	"github.com/rampart-storage/rampart/internal/testutil"
)

// startAttach runs runAttach over NBD in the background until the test ends and
// waits for its status file.
func startAttach(t *testing.T, o *attachOptions) multipath.Status {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- runAttach(ctx, &globalOptions{}, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runAttach: %v", err)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		sts, _ := multipath.ReadStatusFiles(o.statusDir)
		if len(sts) > 0 {
			return sts[0]
		}
		select {
		case err := <-done:
			t.Fatalf("attach ended: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("attach: no status file after 15 s")
	return multipath.Status{}
}

func attachDefaults(dir string, urls ...string) *attachOptions {
	return &attachOptions{nbdAddr: "127.0.0.1:0", policy: "multibus", selector: "queue-length", pollingInterval: time.Second,
		noPathRetry: 2, failback: "immediate", nopInterval: 500 * time.Millisecond, nopTimeout: time.Second,
		replacementTimeout: 15 * time.Second, fastIOFail: "0s", statusDir: filepath.Join(dir, "status"),
		bindingsFile: filepath.Join(dir, "bindings"), urls: urls}
}

// TestAttachNamesByBindings: without --name the map is named from the bindings file
// (mpatha for the first LUN), `multipath status` shows the alias with the WWID, and
// --alias refuses a name bound to another LUN.
func TestAttachNamesByBindings(t *testing.T) {
	dir := t.TempDir()
	url := testutil.StartTarget(t, 8<<20)
	st := startAttach(t, attachDefaults(dir, url, url))
	if st.Name != "mpatha" || !strings.HasPrefix(st.WWID, "3") || !strings.HasPrefix(st.Device, "nbd://") || st.Selector != "queue-length 0" {
		t.Errorf("status: name %q wwid %q device %q selector %q, want mpatha, an NAA WWID (3...), nbd://, queue-length 0", st.Name, st.WWID, st.Device, st.Selector)
	}
	b, err := os.ReadFile(filepath.Join(dir, "bindings"))
	if err != nil || !strings.Contains(string(b), "mpatha "+st.WWID+"\n") {
		t.Errorf("bindings file: %q, %v; want the line mpatha %s", b, err, st.WWID)
	}
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"multipath", "status", "--status-dir", filepath.Join(dir, "status")})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if first := strings.SplitN(out.String(), "\n", 2)[0]; !strings.HasPrefix(first, "mpatha ("+st.WWID+") nbd://") {
		t.Errorf("multipath status first line %q, want mpatha (WWID) nbd://...", first)
	}
	if !strings.Contains(out.String(), "policy='queue-length 0' prio=50 status=active") || strings.Count(out.String(), "active ready running prio=50") != 2 {
		t.Errorf("multipath status:\n%s\nwant one active group of two ready paths with prio 50", out.String())
	}

	other := testutil.StartTarget(t, 8<<20)
	o := attachDefaults(dir, other)
	o.alias = "mpatha"
	o.statusDir = filepath.Join(dir, "status2")
	err = runAttach(t.Context(), &globalOptions{}, o)
	if !errors.Is(err, multipath.ErrAliasTaken) {
		t.Errorf("attach --alias mpatha of another LUN: %v, want ErrAliasTaken", err)
	}
}
