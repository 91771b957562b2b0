package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi/initiator"
	"github.com/rampart-storage/rampart/internal/iscsi/target"
)

// startServe runs runTargetServe in the background and returns the first portal's
// address once the server listens; the server stops at the end of the test.
func startServe(t *testing.T, o *targetServeOptions) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	started := make(chan *target.Server, 1)
	o.started = func(srv *target.Server) { started <- srv }
	o.poll = 50 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- runTargetServe(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runTargetServe: %v", err)
		}
	})
	select {
	case srv := <-started:
		return srv.Addrs()[0].String()
	case err := <-done:
		t.Fatalf("runTargetServe ended before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("runTargetServe: not listening after 10 s")
	}
	return ""
}

// reportLUNs sends REPORT LUNS to LUN 0 and returns the LUN numbers, retrying past
// unit attentions (REPORTED LUNS DATA HAS CHANGED).
func reportLUNs(t *testing.T, s *initiator.Session) []uint64 {
	t.Helper()
	for range 3 {
		cdb := make([]byte, 12)
		cdb[0] = 0xa0
		binary.BigEndian.PutUint32(cdb[6:], 4096)
		buf := make([]byte, 4096)
		res, err := s.Execute(t.Context(), 0, cdb, nil, buf)
		if err != nil {
			t.Fatalf("REPORT LUNS: %v", err)
		}
		if res.Status == 0x02 { // CHECK CONDITION: a unit attention, asked again
			continue
		}
		if res.Status != 0 {
			t.Fatalf("REPORT LUNS: status %#x", res.Status)
		}
		n := int(binary.BigEndian.Uint32(buf)) / 8
		var luns []uint64
		for i := range n {
			e := binary.BigEndian.Uint16(buf[8+8*i:])
			luns = append(luns, uint64(e&0x3fff))
		}
		return luns
	}
	t.Fatal("REPORT LUNS: unit attention three times")
	return nil
}

func TestTargetServeLiveEdit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "target.yaml")
	const iqn = "iqn.2026-11.org.rampart:live"
	for _, args := range [][]string{
		{"backstore", "create", "d0", filepath.Join(dir, "d0.img"), "--size", "1M"},
		{"backstore", "create", "d1", filepath.Join(dir, "d1.img"), "--size", "2M"},
		{"create", iqn},
		{"portal", "create", iqn, "127.0.0.1:0"},
		{"lun", "create", iqn, "d0"},
		{"open", iqn},
	} {
		mustTargetCLI(t, path, args...)
	}
	addr := startServe(t, &targetServeOptions{targetOptions: &targetOptions{config: path}})
	sess, err := initiator.Dial(t.Context(), initiator.Options{Portal: addr, TargetName: iqn, InitiatorName: "iqn.2026-11.org.rampart:tester"})
	if err != nil {
		t.Fatalf("login to %s at %s: %v", iqn, addr, err)
	}
	t.Cleanup(func() { sess.Close() })
	if got := reportLUNs(t, sess); !slices.Equal(got, []uint64{0}) {
		t.Fatalf("LUNs before the edit: got %v, want [0]", got)
	}
	mustTargetCLI(t, path, "lun", "create", iqn, "d1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := reportLUNs(t, sess)
		if slices.Equal(got, []uint64{0, 1}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("LUNs 10 s after `lun create`: got %v, want [0 1]", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := sess.Err(); err != nil {
		t.Fatalf("session after the live edit: %v, want it still up", err)
	}
	// An invalid file is not applied: the server keeps serving the last good config.
	if err := os.WriteFile(path, []byte("version: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := reportLUNs(t, sess); !slices.Equal(got, []uint64{0, 1}) {
		t.Fatalf("LUNs after writing a bad file: got %v, want [0 1] kept", got)
	}
}

func TestTargetServeQuick(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "x.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	const iqn = "iqn.2026-11.org.rampart:quick"
	cfgPath := filepath.Join(dir, "untouched.yaml")
	addr := startServe(t, &targetServeOptions{
		targetOptions: &targetOptions{config: cfgPath},
		listen:        []string{"127.0.0.1:0"}, iqn: iqn, backstore: img,
	})
	sess, err := initiator.Dial(t.Context(), initiator.Options{Portal: addr, TargetName: iqn})
	if err != nil {
		t.Fatalf("login to the quick target: %v", err)
	}
	defer sess.Close()
	if got := reportLUNs(t, sess); !slices.Equal(got, []uint64{0}) {
		t.Fatalf("LUNs: got %v, want [0]", got)
	}
	if _, err := os.Stat(cfgPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("quick form wrote the saved config (stat: %v)", err)
	}
}

func TestTargetServeQuickConfig(t *testing.T) {
	tests := []struct {
		name    string
		o       targetServeOptions
		want    string // JSON of the resulting Target when no error
		wantErr string
	}{
		{name: "two portals, two TPGs, open",
			o:    targetServeOptions{listen: []string{"10.3.1.1", "10.3.2.1:3261"}, iqn: "iqn.2026-11.org.rampart:q", backstore: "/x"},
			want: `{"iqn":"iqn.2026-11.org.rampart:q","portal_groups":[{"tag":1,"portals":["10.3.1.1:3260"]},{"tag":2,"portals":["10.3.2.1:3261"]}],"luns":[{"lun":0,"backstore":"lun0"}],"open_access":true}`},
		{name: "ACL and CHAP closes access",
			o:    targetServeOptions{listen: []string{"127.0.0.1:3260"}, iqn: "iqn.2026-11.org.rampart:q", backstore: "/x", acls: []string{"iqn.2026-11.org.rampart:c"}, chap: "u:0123456789ab", mutualCHAP: "t:ba9876543210"},
			want: `{"iqn":"iqn.2026-11.org.rampart:q","portal_groups":[{"tag":1,"portals":["127.0.0.1:3260"]}],"luns":[{"lun":0,"backstore":"lun0"}],"acls":[{"initiator_iqn":"iqn.2026-11.org.rampart:c"}],"chap":{"user":"u","secret":"0123456789ab"},"mutual_chap":{"user":"t","secret":"ba9876543210"}}`},
		{name: "alua states",
			o:    targetServeOptions{listen: []string{"127.0.0.1", "127.0.0.2"}, iqn: "iqn.2026-11.org.rampart:q", backstore: "/x", alua: []string{"2=standby", "1=active-non-optimized"}},
			want: `{"iqn":"iqn.2026-11.org.rampart:q","portal_groups":[{"tag":1,"portals":["127.0.0.1:3260"],"alua":"active-non-optimized"},{"tag":2,"portals":["127.0.0.2:3260"],"alua":"standby"}],"luns":[{"lun":0,"backstore":"lun0"}],"open_access":true}`},
		{name: "alua of no portal", o: targetServeOptions{listen: []string{"127.0.0.1"}, iqn: "iqn.2026-11.org.rampart:q", backstore: "/x", alua: []string{"3=standby"}}, wantErr: "no portal group 3"},
		{name: "alua malformed", o: targetServeOptions{listen: []string{"127.0.0.1"}, iqn: "iqn.2026-11.org.rampart:q", backstore: "/x", alua: []string{"standby"}}, wantErr: "want TAG=STATE"},
		{name: "missing backstore", o: targetServeOptions{listen: []string{"127.0.0.1"}, iqn: "iqn.2026-11.org.rampart:q"}, wantErr: "needs --listen, --iqn and --backstore"},
		{name: "bad chap", o: targetServeOptions{listen: []string{"127.0.0.1"}, iqn: "iqn.2026-11.org.rampart:q", backstore: "/x", chap: "nosecret"}, wantErr: "--chap: want USER:SECRET"},
		{name: "bad iqn", o: targetServeOptions{listen: []string{"127.0.0.1"}, iqn: "bad", backstore: "/x"}, wantErr: `target "bad": not an iSCSI name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.o.quickConfig()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errUsage) {
					t.Fatalf("got error %v, want a usage error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := jsonOf(cfg.Targets[0]); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			if got := fmt.Sprint(cfg.Backstores[0].Name, " ", cfg.Backstores[0].Volume); got != "lun0 /x" {
				t.Fatalf("backstore: got %s, want lun0 /x", got)
			}
		})
	}
}
