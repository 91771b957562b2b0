package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/testutil"
)

// forward listens on a new local port and forwards every connection to target: a
// second portal to the same target.
func forward(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// nbdRoundTrip writes a block through an NBD export (nbd://HOST:PORT/NAME) and reads
// it back: the export still carries I/O.
func nbdRoundTrip(t *testing.T, uri string, seed byte) error {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	hello := make([]byte, 18) // NBDMAGIC IHAVEOPT flags
	if _, err := io.ReadFull(c, hello); err != nil {
		return fmt.Errorf("nbd handshake: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(3)) // fixed newstyle, no zeroes
	b.WriteString("IHAVEOPT")
	binary.Write(&b, binary.BigEndian, uint32(1)) // NBD_OPT_EXPORT_NAME
	binary.Write(&b, binary.BigEndian, uint32(len(name)))
	b.WriteString(name)
	if _, err := c.Write(b.Bytes()); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, make([]byte, 10)); err != nil { // size, flags
		return fmt.Errorf("nbd export %q: %w", name, err)
	}
	blk := bytes.Repeat([]byte{seed}, 4096)
	request := func(typ uint16, data []byte) []byte {
		var r bytes.Buffer
		binary.Write(&r, binary.BigEndian, uint32(0x25609513))
		binary.Write(&r, binary.BigEndian, uint16(0))
		binary.Write(&r, binary.BigEndian, typ)
		binary.Write(&r, binary.BigEndian, uint64(typ)+1) // handle
		binary.Write(&r, binary.BigEndian, uint64(8192))  // offset
		binary.Write(&r, binary.BigEndian, uint32(len(blk)))
		r.Write(data)
		return r.Bytes()
	}
	reply := func(n int) ([]byte, error) {
		h := make([]byte, 16)
		if _, err := io.ReadFull(c, h); err != nil {
			return nil, err
		}
		if e := binary.BigEndian.Uint32(h[4:]); e != 0 {
			return nil, fmt.Errorf("nbd error %d", e)
		}
		d := make([]byte, n)
		_, err := io.ReadFull(c, d)
		return d, err
	}
	if _, err := c.Write(request(1, blk)); err != nil { // write
		return err
	}
	if _, err := reply(0); err != nil {
		return fmt.Errorf("nbd write: %w", err)
	}
	if _, err := c.Write(request(0, nil)); err != nil { // read
		return err
	}
	got, err := reply(len(blk))
	if err != nil {
		return fmt.Errorf("nbd read: %w", err)
	}
	if !bytes.Equal(got, blk) {
		return fmt.Errorf("nbd read back differs from what was written")
	}
	return nil
}

// TestISCSILogoutOnePortal: with a target logged in through two portals, `iscsi
// logout -T IQN -p PORTAL` logs out of that portal's session only: the login process
// keeps running, the LUN stays attached over the other portal and carries I/O, and
// `iscsi session` and `multipath status` show the one session left, with its number.
// `iscsi login -T IQN` then logs in through that portal again in the same process.
func TestISCSILogoutOnePortal(t *testing.T) {
	dir := t.TempDir()
	u, err := initiator.ParseURL(testutil.StartTarget(t, 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	second := forward(t, u.Portal)
	nodes, status := filepath.Join(dir, "nodes"), filepath.Join(dir, "status")
	if out, err := runRoot(t, "iscsi", "discover", u.Portal, "--node-dir", nodes); err != nil {
		t.Fatalf("discover: %q, %v", out, err)
	}
	if err := initiator.WriteNode(nodes, initiator.NewNode(u.Target, second, 1)); err != nil {
		t.Fatal(err)
	}
	o := &iscsiLoginOptions{attachOptions: *attachDefaults(dir), target: u.Target, nodeDir: nodes, lun: -1}
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
	for strings.Count(loginOut.String(), ": successful") < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(loginOut.String(), ": successful"); n != 2 {
		t.Fatalf("login printed %q, want two successful logins", loginOut.String())
	}
	sessions, err := listSessions(status)
	if err != nil || len(sessions) != 2 {
		t.Fatalf("sessions: %v, %v", sessions, err)
	}
	sid := map[string]int{} // portal -> session number
	line := map[string]string{}
	for _, s := range sessions {
		p := s.path.Session.Portal
		sid[p] = s.sid
		line[p] = fmt.Sprintf("tcp: [%d] %s,1 %s (non-flash)\n", s.sid, p, u.Target)
	}
	out, err := runRoot(t, "iscsi", "session", "--status-dir", status)
	if want := line[sessions[0].path.Session.Portal] + line[sessions[1].path.Session.Portal]; err != nil || out != want || sid[u.Portal] == 0 || sid[second] == 0 {
		t.Fatalf("session before logout: %q, %v; want %q, through %s and %s", out, err, want, u.Portal, second)
	}
	first := line[u.Portal]
	device := sessions[0].st.Device
	if err := nbdRoundTrip(t, device, 1); err != nil {
		t.Fatalf("I/O through %s before the logout: %v", device, err)
	}

	out, err = runRoot(t, "iscsi", "logout", "-T", u.Target, "-p", second, "--status-dir", status)
	where := "[sid: " + fmt.Sprint(sid[second]) + ", target: " + u.Target + ", portal: " + second + ",1]"
	if want := "Logging out of session " + where + "\nLogout of " + where + ": successful\n"; err != nil || out != want {
		t.Fatalf("logout -p %s: %q, %v; want %q", second, out, err, want)
	}
	select {
	case err := <-done:
		done <- err
		t.Fatalf("the login process ended with the logout of one portal: %v", err)
	default:
	}
	out, err = runRoot(t, "iscsi", "session", "--status-dir", status)
	if err != nil || out != first {
		t.Errorf("session after logout of %s: %q, %v; want %q", second, out, err, first)
	}
	out, err = runRoot(t, "iscsi", "session", "-P", "3", "--status-dir", status)
	if err != nil || strings.Contains(out, second) || !strings.Contains(out, fmt.Sprintf("SID: %d\n", sid[u.Portal])) || !strings.Contains(out, "Lun: 0\tState: running") {
		t.Errorf("session -P 3 after the logout, %v:\n%s\nwant the session through the first portal only, its LUN running", err, out)
	}
	out, err = runRoot(t, "multipath", "status", "--status-dir", status)
	if err != nil || strings.Contains(out, second) || strings.Count(out, "active ready running") != 1 {
		t.Errorf("multipath status after the logout, %v:\n%s\nwant one active ready path, none through %s", err, out, second)
	}
	if err := nbdRoundTrip(t, device, 2); err != nil {
		t.Errorf("I/O through %s after the logout of %s: %v", device, second, err)
	}
	out, err = runRoot(t, "iscsi", "logout", "-T", u.Target, "-p", second, "--status-dir", status)
	if err == nil || !strings.Contains(err.Error(), "no matching sessions") {
		t.Errorf("second logout of %s: %q, %v; want no matching sessions", second, out, err)
	}

	// Log in again: the process holding the target takes the portal back.
	out, err = runRoot(t, "iscsi", "login", "-T", u.Target, "--node-dir", nodes, "--status-dir", status)
	wantLogin := "Login to [iface: default, target: " + u.Target + ", portal: " + u.Portal + ",1]: already logged in"
	if err != nil || !strings.Contains(out, wantLogin) || !strings.Contains(out, "portal: "+second+",1]: successful") {
		t.Fatalf("login after the logout of %s: %q, %v; want %q and a successful login through %s", second, out, err, wantLogin, second)
	}
	out, err = runRoot(t, "iscsi", "session", "--status-dir", status)
	if want := line[sessions[0].path.Session.Portal] + line[sessions[1].path.Session.Portal]; err != nil || out != want {
		t.Errorf("session after logging in again: %q, %v; want %q (the same numbers as before)", out, err, want)
	}
	out, err = runRoot(t, "multipath", "status", "--status-dir", status)
	if err != nil || strings.Count(out, "active ready running") != 2 {
		t.Errorf("multipath status after logging in again, %v:\n%s\nwant two active ready paths", err, out)
	}
	if err := nbdRoundTrip(t, device, 3); err != nil {
		t.Errorf("I/O through %s after logging in again: %v", device, err)
	}
	select {
	case err := <-done:
		done <- err
		t.Fatalf("the login process ended: %v", err)
	default:
	}
}
