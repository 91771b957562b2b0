package target

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi"
)

func TestReadWrite(t *testing.T) {
	s := startServer(t, testConfig("itmem:rw:4194304"))
	tests := []struct {
		name     string
		keys     []iscsi.KV
		wantR2Ts bool
	}{
		{"immediate and unsolicited", []iscsi.KV{{Key: "InitialR2T", Value: "No"}, {Key: "ImmediateData", Value: "Yes"}, {Key: "FirstBurstLength", Value: "65536"}, {Key: "MaxBurstLength", Value: "65536"}}, true},
		{"R2T only", []iscsi.KV{{Key: "InitialR2T", Value: "Yes"}, {Key: "ImmediateData", Value: "No"}, {Key: "MaxBurstLength", Value: "16384"}}, true},
		{"immediate then R2T", []iscsi.KV{{Key: "InitialR2T", Value: "Yes"}, {Key: "ImmediateData", Value: "Yes"}, {Key: "MaxRecvDataSegmentLength", Value: "4096"}}, true},
		{"small segments, digests", []iscsi.KV{{Key: "MaxRecvDataSegmentLength", Value: "512"}, {Key: "HeaderDigest", Value: "CRC32C"}, {Key: "DataDigest", Value: "CRC32C"}, {Key: "MaxBurstLength", Value: "8192"}, {Key: "FirstBurstLength", Value: "4096"}, {Key: "InitialR2T", Value: "No"}}, true},
		{"many R2Ts outstanding", []iscsi.KV{{Key: "MaxOutstandingR2T", Value: "4"}, {Key: "MaxBurstLength", Value: "4096"}, {Key: "ImmediateData", Value: "No"}}, true},
	}
	for n, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := dial(t, s.Addrs()[0])
			i.isid[5] = byte(n)
			i.mustLogin(loginOpts{target: testIQN, initiator: testInit, keys: tt.keys})
			data := make([]byte, 256<<10)
			for k := range data {
				data[k] = byte(rand.IntN(256))
			}
			lba := uint32(n * 512)
			w := i.write(lba, data)
			if w.status != 0 {
				t.Fatalf("write: got status %#x, want GOOD", w.status)
			}
			if tt.wantR2Ts && w.r2ts == 0 {
				t.Error("write: got no R2T, want some")
			}
			r := i.read(lba, uint16(len(data)/512))
			if r.status != 0 || !bytes.Equal(r.data, data) {
				t.Fatalf("read: got status %#x and %d bytes (equal %v), want GOOD and the data written", r.status, len(r.data), bytes.Equal(r.data, data))
			}
			mrdsl := 262144
			if v := atoiDefault(i.paramsSent(tt.keys, "MaxRecvDataSegmentLength"), 0); v != 0 {
				mrdsl = v
			}
			if want := (len(data) + mrdsl - 1) / mrdsl; r.dataPDUs < want {
				t.Errorf("read: got %d Data-In PDUs, want at least %d", r.dataPDUs, want)
			}
		})
	}
}

func (i *ini) paramsSent(kvs []iscsi.KV, key string) string {
	v, _ := iscsi.Get(kvs, key)
	return v
}

func TestResiduals(t *testing.T) {
	s := startServer(t, testConfig("itmem:resid:4194304"))
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	// READ(10) of 4 blocks with an expected length of 1 block: overflow.
	p := i.cmdPDU(read10(0, 4), true, 512, nil, true)
	i.send(p)
	r := i.readResult(p.ITT())
	if r.flags&iscsi.FlagOverflow == 0 || r.residual != 1536 || len(r.data) != 512 {
		t.Errorf("overflow: got flags %#x residual %d data %d, want O bit, 1536, 512", r.flags, r.residual, len(r.data))
	}
	// 1 block with an expected length of 4 blocks: underflow.
	p = i.cmdPDU(read10(0, 1), true, 2048, nil, true)
	i.send(p)
	r = i.readResult(p.ITT())
	if r.flags&iscsi.FlagUnderflw == 0 || r.residual != 1536 || len(r.data) != 512 {
		t.Errorf("underflow: got flags %#x residual %d data %d, want U bit, 1536, 512", r.flags, r.residual, len(r.data))
	}
}

// TestConcurrentCommands proves commands of one connection run at once: eight reads
// on a device that takes 200 ms per read finish in far less than 8 x 200 ms.
func TestConcurrentCommands(t *testing.T) {
	s := startServer(t, testConfig("itmem:slow:4194304:200"))
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	start := time.Now()
	const n = 8
	for k := 0; k < n; k++ {
		i.send(i.cmdPDU(read10(uint32(k), 1), true, 512, nil, true))
	}
	for k := 0; k < n; k++ {
		p := i.recv()
		if p.Opcode() != iscsi.OpDataIn && p.Opcode() != iscsi.OpSCSIResponse {
			t.Fatalf("got %s", p.Opcode())
		}
	}
	if d := time.Since(start); d > 800*time.Millisecond {
		t.Errorf("got %v for %d reads of 200 ms, want them concurrent (< 800 ms)", d, n)
	}
}

func TestCmdSNWindow(t *testing.T) {
	s := startServer(t, testConfig("itmem:cmdsn:1048576"))
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	// A command beyond MaxCmdSN is dropped: the next in-window command is answered first.
	p := i.cmdPDU(read10(0, 1), true, 512, nil, true)
	p.SetU32(24, i.maxCmdSN+10)
	i.send(p)
	q := i.cmdPDU(read10(0, 1), true, 512, nil, true)
	q.SetU32(24, i.cmdSN-2) // the CmdSN p should have had
	i.send(q)
	r := i.recv()
	if r.ITT() != q.ITT() {
		t.Fatalf("got an answer for ITT %d, want only ITT %d (the out-of-window command dropped)", r.ITT(), q.ITT())
	}
}

func TestTaskManagement(t *testing.T) {
	s := startServer(t, testConfig("itmem:tmf:1048576:300"))
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	tmf := func(fn byte, rtt uint32, lun uint64) *iscsi.PDU {
		var p iscsi.PDU
		p.BHS[0] = byte(iscsi.OpTaskMgmt) | iscsi.ImmediateBit
		p.BHS[1] = iscsi.FlagFinal | fn
		p.SetLUN(lun)
		p.SetU32(16, i.nextITT())
		p.SetU32(20, rtt)
		p.SetU32(24, i.cmdSN)
		p.SetU32(32, i.cmdSN)
		return &p
	}
	tests := []struct {
		name string
		fn   byte
		lun  uint64
		live bool // abort a live command
		want byte
	}{
		{"abort task", tmfAbortTask, 0, true, tmfComplete},
		{"abort unknown task", tmfAbortTask, 0, false, tmfNoTask},
		{"abort task set", tmfAbortTaskSet, 0, true, tmfComplete},
		{"clear task set", tmfClearTaskSet, 0, true, tmfComplete},
		{"LU reset", tmfLUReset, 0, true, tmfComplete},
		{"LU reset of no LUN", tmfLUReset, 5 << 48, false, tmfNoLUN},
		{"warm reset", tmfTargetWarmReset, 0, true, tmfComplete},
		{"clear ACA", tmfClearACA, 0, false, tmfNotSupported},
		{"reassign", tmfTaskReassign, 0, false, tmfReassignNotSupp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i.clearUA() // resets leave unit attentions
			rtt := uint32(0x1234)
			if tt.live {
				p := i.cmdPDU(read10(0, 1), true, 512, nil, true)
				rtt = p.ITT()
				i.send(p)
				time.Sleep(50 * time.Millisecond)
			}
			req := tmf(tt.fn, rtt, tt.lun)
			if tt.fn == tmfAbortTask && !tt.live {
				req.SetU32(32, i.cmdSN-5) // RefCmdSN already used: the task does not exist
			}
			i.send(req)
			r := i.recv()
			if r.Opcode() != iscsi.OpTaskMgmtResp || r.ITT() != req.ITT() {
				t.Fatalf("got %s for ITT %d, want the TMF response (aborted task answered?)", r.Opcode(), r.ITT())
			}
			if r.BHS[2] != tt.want {
				t.Errorf("got response %d, want %d", r.BHS[2], tt.want)
			}
		})
	}
	// Cold reset answers and then closes the session.
	i.send(tmf(tmfTargetColdReset, 0, 0))
	if r := i.recv(); r.Opcode() != iscsi.OpTaskMgmtResp || r.BHS[2] != 0 {
		t.Fatalf("cold reset: got %s response %d", r.Opcode(), r.BHS[2])
	}
	if _, err := i.tryRecv(); err == nil {
		t.Error("cold reset: connection still open")
	}
}

func TestBadPDUs(t *testing.T) {
	s := startServer(t, testConfig("itmem:bad:1048576"))
	before := runtime.NumGoroutine()
	good := dial(t, s.Addrs()[0])
	good.mustLogin(loginOpts{target: testIQN, initiator: testInit})

	// Unknown opcode and SNACK: Reject carrying the header, connection kept.
	i := dial(t, s.Addrs()[0])
	i.isid[5] = 9
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	for _, tc := range []struct {
		op     byte
		reason byte
	}{{0x1c, rejectNotSupported}, {byte(iscsi.OpSNACK), rejectSNACK}} {
		var p iscsi.PDU
		p.BHS[0] = tc.op
		p.BHS[1] = 0x80
		p.SetU32(16, 77)
		i.send(&p)
		r := i.recv()
		if r.Opcode() != iscsi.OpReject || r.BHS[2] != tc.reason || len(r.Data) != 48 || r.Data[0] != tc.op {
			t.Errorf("opcode %#x: got %s reason %#x, want Reject %#x with the header", tc.op, r.Opcode(), r.BHS[2], tc.reason)
		}
	}
	// A data segment beyond MaxRecvDataSegmentLength: the connection is dropped.
	var p iscsi.PDU
	p.BHS[0] = byte(iscsi.OpNOPOut) | iscsi.ImmediateBit
	p.BHS[1] = 0x80
	p.SetU32(16, 5)
	p.Data = make([]byte, 300000)
	iscsi.WritePDU(i.nc, &p, i.d)
	for {
		if _, err := i.tryRecv(); err != nil {
			break
		}
	}
	// Garbage before login, and a login abandoned halfway.
	g := dial(t, s.Addrs()[0])
	g.nc.Write(bytes.Repeat([]byte{0xff}, 100))
	h := dial(t, s.Addrs()[0])
	h.nc.Write([]byte{0x43, 0x87})
	h.nc.Close()
	// The good session still works.
	if r := good.read(0, 1); r.status != 0 {
		t.Errorf("good session: got status %#x", r.status)
	}
	g.nc.Close()
	good.nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("got %d goroutines, want at most %d as before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestSessionReinstatement(t *testing.T) {
	s := startServer(t, testConfig("itmem:reinst:1048576"))
	a := dial(t, s.Addrs()[0])
	a.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	b := dial(t, s.Addrs()[0])
	b.mustLogin(loginOpts{target: testIQN, initiator: testInit}) // same ISID, TSIH 0
	if _, err := a.tryRecv(); err == nil {
		t.Error("old session: got a PDU, want the connection closed")
	}
	if r := b.read(0, 1); r.status != 0 {
		t.Errorf("new session: got status %#x", r.status)
	}
}

func TestDiscovery(t *testing.T) {
	cfg := testConfig("itmem:disc:1048576")
	cfg.Targets[0].PortalGroups = append(cfg.Targets[0].PortalGroups, PortalGroup{Tag: 2, Portals: []string{"127.0.0.2:0"}})
	cfg.Targets = append(cfg.Targets, Target{IQN: "iqn.2026-11.org.rampart:hidden", PortalGroups: []PortalGroup{{Tag: 1, Portals: []string{"127.0.0.1:0"}}}})
	s := startServer(t, cfg)
	var first string
	for _, a := range s.Addrs() {
		if strings.HasPrefix(a.String(), "127.0.0.1:") {
			first = a.String()
		}
	}
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{discovery: true, initiator: testInit, keys: []iscsi.KV{{Key: "MaxRecvDataSegmentLength", Value: "512"}}})
	var p iscsi.PDU
	p.BHS[0] = byte(iscsi.OpText)
	p.BHS[1] = iscsi.FlagFinal
	p.SetU32(16, i.nextITT())
	p.SetU32(20, iscsi.ReservedTag)
	p.SetU32(24, i.cmdSN)
	p.Data = iscsi.AppendText(nil, []iscsi.KV{{Key: "SendTargets", Value: "All"}})
	i.send(&p)
	var text []byte
	for {
		r := i.recv()
		if r.Opcode() != iscsi.OpTextResp {
			t.Fatalf("got %s, want Text Response", r.Opcode())
		}
		text = append(text, r.Data...)
		if r.Flags()&iscsi.FlagFinal != 0 {
			break
		}
		// Continue with an empty Text request carrying the TTT.
		p.BHS[1] = iscsi.FlagFinal
		p.SetU32(20, r.U32(20))
		p.Data = nil
		i.send(&p)
	}
	kvs, err := iscsi.ParseText(text)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range kvs {
		got = append(got, kv.Key+"="+kv.Value)
	}
	if len(got) != 3 || got[0] != "TargetName="+testIQN || got[1] != "TargetAddress="+first+",1" || !strings.HasPrefix(got[2], "TargetAddress=127.0.0.2:") {
		t.Errorf("got %q, want the ACL'd target with both portals", got)
	}
}

func TestApplyClosesRemovedACL(t *testing.T) {
	cfg := testConfig("itmem:apply:1048576")
	s := startServer(t, cfg)
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	// Add a LUN: the live session sees it.
	cfg2 := cfg
	cfg2.Backstores = append([]Backstore{}, cfg.Backstores...)
	cfg2.Backstores = append(cfg2.Backstores, Backstore{Name: "two", Volume: "itmem:apply2:1048576"})
	cfg2.Targets = []Target{cfg.Targets[0]}
	cfg2.Targets[0].LUNs = []LUN{{LUN: 0, Backstore: "disk"}, {LUN: 1, Backstore: "two"}}
	if err := s.Apply(t.Context(), cfg2); err != nil {
		t.Fatal(err)
	}
	var r result
	for k := 0; k < 3; k++ { // a new LU starts with a unit attention
		p := i.cmdPDU(read10(0, 1), true, 512, nil, true)
		p.SetLUN(1 << 48)
		i.send(p)
		if r = i.readResult(p.ITT()); r.status == 0 || len(r.sense) < 3 || r.sense[2]&0xf != 6 {
			break
		}
	}
	if r.status != 0 {
		t.Errorf("LUN 1 after Apply: got status %#x sense %x, want GOOD", r.status, r.sense)
	}
	// Remove the ACL: the session is closed.
	cfg3 := cfg2
	cfg3.Targets = []Target{cfg2.Targets[0]}
	cfg3.Targets[0].ACLs = nil
	if err := s.Apply(t.Context(), cfg3); err != nil {
		t.Fatal(err)
	}
	if r, err := i.tryRecv(); err != nil || r.Opcode() != iscsi.OpAsync || r.BHS[36] != asyncDropAllConnections {
		t.Errorf("got %v %v, want an Async Message announcing the drop", r, err)
	}
	if _, err := i.tryRecv(); err == nil {
		t.Error("got a PDU, want the session of the removed ACL closed")
	}
}

func TestValidate(t *testing.T) {
	good := testConfig("itmem:v:1048576")
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string
	}{
		{"good", func(c *Config) {}, ""},
		{"duplicate backstore", func(c *Config) { c.Backstores = append(c.Backstores, c.Backstores[0]) }, "duplicate backstore"},
		{"unknown backstore", func(c *Config) { c.Targets[0].LUNs[0].Backstore = "nope" }, "unknown backstore"},
		{"bad IQN", func(c *Config) { c.Targets[0].IQN = "disk1" }, "not an iSCSI name"},
		{"bad portal", func(c *Config) { c.Targets[0].PortalGroups[0].Portals = []string{"localhost"} }, "portal"},
		{"short CHAP secret", func(c *Config) { c.Targets[0].CHAP = &CHAP{User: "u", Secret: "short"} }, "secret of 5 bytes"},
		{"duplicate target", func(c *Config) { c.Targets = append(c.Targets, c.Targets[0]) }, "duplicate target"},
	}
	for _, tt := range tests {
		c := good
		c.Targets = []Target{good.Targets[0]}
		c.Targets[0].LUNs = []LUN{{LUN: 0, Backstore: "disk"}}
		c.Targets[0].PortalGroups = []PortalGroup{{Tag: 1, Portals: []string{"127.0.0.1:0"}}}
		c.Backstores = append([]Backstore{}, good.Backstores...)
		tt.mutate(&c)
		err := Validate(c)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

// TestTransferLongerThanTargetBuffers: a command expecting more than MaxTransferLength is
// answered with CHECK CONDITION (ILLEGAL REQUEST, INVALID FIELD IN CDB) and the session
// goes on; it is not rejected at the PDU level, which stalls libiscsi.
func TestTransferLongerThanTargetBuffers(t *testing.T) {
	s := startServer(t, testConfig("itmem:big:4194304"))
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	i.clearUA()
	for _, read := range []bool{true, false} {
		edtl := uint32(MaxTransferLength + 4096)
		cdb := read10(0, 8)
		if !read {
			cdb[0] = 0x2a // WRITE(10)
		}
		p := i.cmdPDU(cdb, read, edtl, nil, true)
		i.send(p)
		r := i.readResult(p.ITT())
		if r.status != 0x02 || len(r.sense) < 14 || r.sense[2]&0xf != 0x5 || r.sense[12] != 0x24 {
			t.Errorf("read=%v: %d-byte transfer: status %#x sense % x, want CHECK CONDITION, ILLEGAL REQUEST, 24h", read, edtl, r.status, r.sense)
		}
	}
	if r := i.read(0, 8); r.status != 0 {
		t.Errorf("read after the refused commands: status %#x, want GOOD (the session goes on)", r.status)
	}
}
