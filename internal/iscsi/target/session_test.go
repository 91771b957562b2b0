package target

import (
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi"
)

// TestNopInPing: an idle connection is pinged with a NOP-In; one that does not answer
// is dropped.
func TestNopInPing(t *testing.T) {
	cfg := testConfig("itmem:ping:1048576")
	s, err := New(Options{Config: cfg, NopInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	p := i.recv()
	if p.Opcode() != iscsi.OpNOPIn || p.ITT() != iscsi.ReservedTag || p.U32(20) == iscsi.ReservedTag {
		t.Fatalf("got %s itt %#x ttt %#x, want a NOP-In ping", p.Opcode(), p.ITT(), p.U32(20))
	}
	// Answer it: the connection stays.
	var r iscsi.PDU
	r.BHS[0] = byte(iscsi.OpNOPOut) | iscsi.ImmediateBit
	r.BHS[1] = iscsi.FlagFinal
	r.SetU32(16, iscsi.ReservedTag)
	r.SetU32(20, p.U32(20))
	r.SetU32(24, i.cmdSN)
	i.send(&r)
	if res := i.read(0, 1); res.status != 0 {
		t.Fatalf("read after the ping: got status %#x", res.status)
	}
	// Stop answering: pings come, then the connection is dropped.
	start := time.Now()
	for {
		if _, err := i.tryRecv(); err != nil {
			break
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("got the silent connection dropped after %v, want about 200 ms", d)
	}
}

// TestLoginTimeout: a login abandoned halfway is dropped after LoginTimeout.
func TestLoginTimeout(t *testing.T) {
	s, err := New(Options{Config: testConfig("itmem:lto:1048576"), LoginTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	i := dial(t, s.Addrs()[0])
	r, _ := i.loginPDU(0, 0, false, []iscsi.KV{{Key: "InitiatorName", Value: testInit}, {Key: "TargetName", Value: testIQN}, {Key: "AuthMethod", Value: "None"}})
	if st := loginStatus(r); st != 0 {
		t.Fatalf("got status %#x", st)
	}
	start := time.Now()
	if _, err := i.tryRecv(); err == nil {
		t.Fatal("got a PDU, want the connection closed")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("got the connection closed after %v, want about 200 ms", d)
	}
}

// TestDataSNError: Data-Out with a wrong DataSN ends the command with CHECK CONDITION
// and the session goes on.
func TestDataSNError(t *testing.T) {
	s := startServer(t, testConfig("itmem:datasn:1048576"))
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit, keys: []iscsi.KV{{Key: "InitialR2T", Value: "No"}, {Key: "ImmediateData", Value: "No"}}})
	p := i.cmdPDU(write10(0, 2), false, 1024, nil, false)
	i.send(p)
	for k, sn := range []uint32{0, 0} {
		var d iscsi.PDU
		d.BHS[0] = byte(iscsi.OpDataOut)
		if k == 1 {
			d.BHS[1] = iscsi.FlagFinal
		}
		d.SetU32(16, p.ITT())
		d.SetU32(20, iscsi.ReservedTag)
		d.SetU32(36, sn)
		d.SetU32(40, uint32(k*512))
		d.Data = make([]byte, 512)
		i.send(&d)
	}
	r := i.readResult(p.ITT())
	if r.status != 2 || len(r.sense) < 14 || r.sense[2] != 0x0b || r.sense[12] != 0x4b {
		t.Fatalf("got status %#x sense %x, want CHECK CONDITION ABORTED COMMAND 4Bh", r.status, r.sense)
	}
	if res := i.read(0, 1); res.status != 0 {
		t.Errorf("read after the error: got status %#x", res.status)
	}
}

func TestLogout(t *testing.T) {
	s := startServer(t, testConfig("itmem:logout:1048576"))
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	var p iscsi.PDU
	p.BHS[0] = byte(iscsi.OpLogout) | iscsi.ImmediateBit
	p.BHS[1] = iscsi.FlagFinal | logoutCloseSession
	p.SetU32(16, i.nextITT())
	p.SetU32(24, i.cmdSN)
	i.send(&p)
	r := i.recv()
	if r.Opcode() != iscsi.OpLogoutResp || r.BHS[2] != 0 || r.ITT() != p.ITT() {
		t.Fatalf("got %s response %d, want Logout Response 0", r.Opcode(), r.BHS[2])
	}
	if _, err := i.tryRecv(); err == nil {
		t.Error("got a PDU after logout, want the connection closed")
	}
}

// TestCloseDuringLogin: Close does not wait for a login that never ends.
func TestCloseDuringLogin(t *testing.T) {
	s, err := New(Options{Config: testConfig("itmem:closelogin:1048576")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	i := dial(t, s.Addrs()[0])
	i.nc.Write([]byte{0x43}) // one byte of a login request, then silence
	j := dial(t, s.Addrs()[0])
	j.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("got Close after %v, want it prompt", d)
	}
	if r, err := j.tryRecv(); err != nil || r.Opcode() != iscsi.OpAsync {
		t.Errorf("logged-in session: got %v %v, want an Async Message before the close", r, err)
	}
}

func timeNowPlus() time.Time { return time.Now().Add(20 * time.Second) }
