package target

import (
	"bufio"
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi"
)

func TestLoginStatus(t *testing.T) {
	chap := &CHAP{User: "alice", Secret: "secretsecret1"}
	mutual := &CHAP{User: "target", Secret: "tsecretsecret2"}
	cfg := testConfig("itmem:login:4194304")
	cfg.Targets = append(cfg.Targets, Target{
		IQN:          "iqn.2026-11.org.rampart:chap",
		PortalGroups: []PortalGroup{{Tag: 1, Portals: []string{"127.0.0.1:0"}}},
		LUNs:         []LUN{{LUN: 0, Backstore: "disk"}},
		ACLs:         []ACL{{InitiatorIQN: testInit, CHAP: chap, MutualCHAP: mutual}},
	}, Target{
		IQN:          "iqn.2026-11.org.rampart:open",
		PortalGroups: []PortalGroup{{Tag: 1, Portals: []string{"127.0.0.1:0"}}},
		LUNs:         []LUN{{LUN: 0, Backstore: "disk"}},
		OpenAccess:   true,
		CHAP:         chap,
	})
	s := startServer(t, cfg)
	addr := s.Addrs()[0]
	other := "iqn.2026-11.org.rampart:stranger"
	tests := []struct {
		name string
		o    loginOpts
		want uint16
	}{
		{"ACL", loginOpts{target: testIQN, initiator: testInit}, 0},
		{"no ACL", loginOpts{target: testIQN, initiator: other}, statusAuthFailure},
		{"unknown target", loginOpts{target: "iqn.2026-11.org.rampart:nope", initiator: testInit}, statusNotFound},
		{"no target name", loginOpts{initiator: testInit}, statusMissingParameter},
		{"no initiator name", loginOpts{target: testIQN}, statusMissingParameter},
		{"CHAP", loginOpts{target: "iqn.2026-11.org.rampart:chap", initiator: testInit, chap: chap}, 0},
		{"mutual CHAP", loginOpts{target: "iqn.2026-11.org.rampart:chap", initiator: testInit, chap: chap, mutual: mutual}, 0},
		{"wrong CHAP", loginOpts{target: "iqn.2026-11.org.rampart:chap", initiator: testInit, chap: chap, wrongCHAPResponse: true}, statusAuthFailure},
		{"wrong CHAP user", loginOpts{target: "iqn.2026-11.org.rampart:chap", initiator: testInit, chap: &CHAP{User: "bob", Secret: chap.Secret}}, statusAuthFailure},
		{"CHAP required, None offered", loginOpts{target: "iqn.2026-11.org.rampart:chap", initiator: testInit}, statusAuthFailure},
		{"open access with target CHAP", loginOpts{target: "iqn.2026-11.org.rampart:open", initiator: other, chap: chap}, 0},
		{"discovery", loginOpts{discovery: true, initiator: other}, 0},
		{"digests", loginOpts{target: testIQN, initiator: testInit, keys: []iscsi.KV{{Key: "HeaderDigest", Value: "CRC32C"}, {Key: "DataDigest", Value: "CRC32C"}}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := dial(t, addr)
			if got := i.login(tt.o); got != tt.want {
				t.Fatalf("got status 0x%04x, want 0x%04x", got, tt.want)
			}
			if tt.want != 0 {
				if _, err := i.tryRecv(); err == nil {
					t.Error("got another PDU after a failed login, want the connection closed")
				}
				return
			}
			// The session works: a NOP-Out ping comes back with its data.
			var p iscsi.PDU
			p.BHS[0] = byte(iscsi.OpNOPOut) | iscsi.ImmediateBit
			p.BHS[1] = iscsi.FlagFinal
			p.SetU32(16, i.nextITT())
			p.SetU32(20, iscsi.ReservedTag)
			p.SetU32(24, i.cmdSN)
			p.Data = []byte("ping data")
			i.send(&p)
			r := i.recv()
			if r.Opcode() != iscsi.OpNOPIn || r.ITT() != p.ITT() || !bytes.Equal(r.Data, p.Data) {
				t.Errorf("got %s itt %d data %q, want NOP-In itt %d with the ping data", r.Opcode(), r.ITT(), r.Data, p.ITT())
			}
		})
	}
}

func TestLoginNegotiation(t *testing.T) {
	s := startServer(t, testConfig("itmem:neg:4194304"))
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit, keys: []iscsi.KV{
		{Key: "MaxRecvDataSegmentLength", Value: "4096"},
		{Key: "InitialR2T", Value: "No"},
		{Key: "ImmediateData", Value: "Yes"},
		{Key: "MaxBurstLength", Value: "16776192"},
		{Key: "FirstBurstLength", Value: "262144"},
		{Key: "ErrorRecoveryLevel", Value: "2"},
		{Key: "X-org.example.Unknown", Value: "1"},
	}})
	want := map[string]string{
		"InitialR2T":               "No",
		"ImmediateData":            "Yes",
		"MaxBurstLength":           "16776192",
		"FirstBurstLength":         "262144",
		"ErrorRecoveryLevel":       "0",
		"X-org.example.Unknown":    iscsi.NotUnderstood,
		"MaxRecvDataSegmentLength": "262144",
	}
	for k, v := range want {
		if got := i.params[k]; got != v {
			t.Errorf("%s: got %q, want %q", k, got, v)
		}
	}
}

// FuzzLogin feeds a byte stream into a login on a net.Pipe: it must end without
// panicking or hanging.
func FuzzLogin(f *testing.F) {
	var p iscsi.PDU
	p.BHS[0] = byte(iscsi.OpLogin) | iscsi.ImmediateBit
	p.BHS[1] = iscsi.FlagTransit | 1
	p.Data = iscsi.AppendText(nil, []iscsi.KV{{Key: "InitiatorName", Value: testInit}, {Key: "TargetName", Value: testIQN}, {Key: "AuthMethod", Value: "None"}})
	var buf bytes.Buffer
	iscsi.WritePDU(&buf, &p, iscsi.Digests{})
	p.BHS[1] = iscsi.FlagTransit | 1<<2 | 3
	p.Data = iscsi.AppendText(nil, []iscsi.KV{{Key: "MaxRecvDataSegmentLength", Value: "512"}})
	iscsi.WritePDU(&buf, &p, iscsi.Digests{})
	f.Add(buf.Bytes())
	f.Add([]byte{0x43, 0x40, 0, 0, 0, 0, 0, 5})
	s, err := New(Options{Config: testConfig("itmem:fuzz:1048576")})
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Start(f.Context()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, b []byte) {
		a, z := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.serveLoginOnly(a, "127.0.0.1:0")
		}()
		go func() {
			z.Write(b)
			z.Close()
		}()
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := z.Read(buf); err != nil {
					return
				}
			}
		}()
		<-done
	})
}

// serveLoginOnly runs the login phase on nc and closes it (for fuzzing).
func (s *Server) serveLoginOnly(nc net.Conn, portal string) {
	c := &conn{srv: s, nc: nc, br: bufio.NewReader(nc), bw: iscsi.NewSockWriter(nc), portal: portal, log: s.log, tasks: map[uint32]*task{}}
	nc.SetDeadline(time.Now().Add(s.opts.LoginTimeout))
	if ss, err := s.doLogin(c); err == nil {
		s.unregister(ss)
		close(ss.done)
	}
	nc.Close()
}

// TestLoginContinuation: login text split over PDUs with the C bit is gathered; each
// partial request gets an empty response.
func TestLoginContinuation(t *testing.T) {
	s := startServer(t, testConfig("itmem:cont:1048576"))
	i := dial(t, s.Addrs()[0])
	text := iscsi.AppendText(nil, []iscsi.KV{{Key: "InitiatorName", Value: testInit}, {Key: "TargetName", Value: testIQN}, {Key: "AuthMethod", Value: "None"}})
	half := len(text) / 2
	for k, part := range [][]byte{text[:half], text[half:]} {
		var p iscsi.PDU
		p.BHS[0] = byte(iscsi.OpLogin) | iscsi.ImmediateBit
		if k == 0 {
			p.BHS[1] = iscsi.FlagContinue
		} else {
			p.BHS[1] = iscsi.FlagTransit | 1
		}
		copy(p.BHS[8:14], i.isid[:])
		p.SetU32(16, i.itt)
		p.SetU32(24, i.cmdSN)
		p.Data = part
		i.send(&p)
		r := i.recv()
		if st := loginStatus(r); st != 0 {
			t.Fatalf("part %d: got status %#x", k, st)
		}
		if k == 0 && (len(r.Data) != 0 || r.Flags()&iscsi.FlagTransit != 0) {
			t.Fatalf("partial request: got %q flags %#x, want an empty response without T", r.Data, r.Flags())
		}
		if k == 1 && r.Flags()&iscsi.FlagTransit == 0 {
			t.Fatalf("last part: got flags %#x, want T", r.Flags())
		}
	}
	r, _ := i.loginPDU(1, 3, true, nil)
	if st := loginStatus(r); st != 0 || r.U16(14) == 0 {
		t.Fatalf("got status %#x TSIH %d, want success", st, r.U16(14))
	}
}
