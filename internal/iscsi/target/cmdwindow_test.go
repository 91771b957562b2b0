package target

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/iscsi"
)

func TestCmdWindowOrder(t *testing.T) {
	type arrival struct {
		sn  uint32
		imm bool
	}
	tests := []struct {
		name     string
		start    uint32
		depth    int
		arrivals []arrival
		// want is the order commands are delivered in (by CmdSN; immediate ones too).
		want    []uint32
		wantExp uint32
	}{
		{"in order", 10, 8, []arrival{{10, false}, {11, false}, {12, false}}, []uint32{10, 11, 12}, 13},
		{"one gap filled last", 10, 8, []arrival{{11, false}, {12, false}, {10, false}}, []uint32{10, 11, 12}, 13},
		{"reversed", 10, 8, []arrival{{13, false}, {12, false}, {11, false}, {10, false}}, []uint32{10, 11, 12, 13}, 14},
		{"gap never filled", 10, 8, []arrival{{11, false}, {12, false}}, nil, 10},
		{"partly filled", 10, 8, []arrival{{12, false}, {10, false}}, []uint32{10}, 11},
		{"immediate bypasses a gap", 10, 8, []arrival{{11, false}, {10, true}, {10, false}}, []uint32{10, 10, 11}, 12},
		{"duplicate of a held CmdSN dropped", 10, 8, []arrival{{11, false}, {11, false}, {10, false}}, []uint32{10, 11}, 12},
		{"duplicate of a delivered CmdSN dropped", 10, 8, []arrival{{10, false}, {10, false}}, []uint32{10}, 11},
		{"beyond MaxCmdSN dropped", 10, 4, []arrival{{14, false}, {10, false}, {11, false}}, []uint32{10, 11}, 12},
		{"before ExpCmdSN dropped", 10, 4, []arrival{{9, false}, {10, false}}, []uint32{10}, 11},
		{"serial number wrap", 0xfffffffe, 8, []arrival{{0, false}, {0xffffffff, false}, {0xfffffffe, false}}, []uint32{0xfffffffe, 0xffffffff, 0}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w cmdWindow
			w.init(tt.start, tt.depth)
			var got []uint32
			for _, a := range tt.arrivals {
				if !w.receive(a.sn, a.imm, false) {
					continue
				}
				w.deliver(a.sn, a.imm, deliverFunc(func() { got = append(got, a.sn) }))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got delivery order %v, want %v", got, tt.want)
			}
			if exp, _ := w.sns(); exp != tt.wantExp {
				t.Errorf("got ExpCmdSN %d, want %d", exp, tt.wantExp)
			}
		})
	}
}

func TestCmdWindowMaxCmdSN(t *testing.T) {
	var w cmdWindow
	w.init(1, 4)
	if exp, max := w.sns(); exp != 1 || max != 4 {
		t.Fatalf("got window %d..%d, want 1..4", exp, max)
	}
	// Two counted commands held behind CmdSN 1: they take slots, MaxCmdSN stays.
	for _, sn := range []uint32{2, 3} {
		if !w.receive(sn, false, true) {
			t.Fatalf("CmdSN %d refused", sn)
		}
		w.deliver(sn, false, deliverFunc(func() {}))
	}
	if exp, max := w.sns(); exp != 1 || max != 4 {
		t.Fatalf("got window %d..%d with two held, want 1..4", exp, max)
	}
	if w.held() != 2 {
		t.Fatalf("got %d held, want 2", w.held())
	}
	w.receive(1, false, true)
	w.deliver(1, false, deliverFunc(func() {}))
	// Three in flight of four: ExpCmdSN 4, one free slot, MaxCmdSN never decreases.
	if exp, max := w.sns(); exp != 4 || max != 4 {
		t.Fatalf("got window %d..%d, want 4..4", exp, max)
	}
	w.done()
	w.done()
	if exp, max := w.sns(); exp != 4 || max != 6 {
		t.Fatalf("got window %d..%d after two answers, want 4..6", exp, max)
	}
	if w.held() != 0 {
		t.Fatalf("got %d held, want 0", w.held())
	}
}

// expCmdSN is the ExpCmdSN of the last PDU received.
func (i *ini) expCmdSN() uint32 { return i.lastExpCmdSN }

// expectSilence fails when the target sends anything within d.
func (i *ini) expectSilence(d time.Duration) {
	i.t.Helper()
	i.nc.SetReadDeadline(time.Now().Add(d))
	p, err := i.tryRecv()
	i.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	if err == nil {
		i.t.Fatalf("got %s for ITT %d, want nothing yet (command held for CmdSN order)", p.Opcode(), p.ITT())
	}
}

func TestCmdSNReorder(t *testing.T) {
	s := startServer(t, testConfig("itmem:reorder:1048576"))
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit, keys: []iscsi.KV{{Key: "InitialR2T", Value: "No"}}})
	data := bytes.Repeat([]byte("reorder!"), 128) // 1 KiB

	// A write (CmdSN n+1) whose predecessor (CmdSN n, a read of the same blocks) is
	// "lost" for now: it gathers its unsolicited data but is not executed.
	first := i.cmdPDU(read10(0, 2), true, 1024, nil, true) // CmdSN n
	w := i.cmdPDU(write10(0, 2), false, 1024, data[:512], false)
	i.send(w)
	var d iscsi.PDU
	d.BHS[0] = byte(iscsi.OpDataOut)
	d.BHS[1] = iscsi.FlagFinal
	d.SetU32(16, w.ITT())
	d.SetU32(20, iscsi.ReservedTag)
	d.SetU32(40, 512)
	d.Data = data[512:]
	i.send(&d)
	i.expectSilence(200 * time.Millisecond)

	// An immediate command bypasses the queue; ExpCmdSN still waits for n.
	tur := i.cmdPDU(make([]byte, 6), false, 0, nil, true)
	tur.BHS[0] |= iscsi.ImmediateBit
	tur.SetU32(24, i.cmdSN)
	i.cmdSN--
	i.send(tur)
	r := i.recv()
	if r.ITT() != tur.ITT() || r.BHS[3] != 0 {
		t.Fatalf("got %s ITT %d status %#x, want GOOD for the immediate TEST UNIT READY", r.Opcode(), r.ITT(), r.BHS[3])
	}
	if exp := r.U32(28); exp != first.U32(24) {
		t.Errorf("got ExpCmdSN %d while CmdSN %d is missing, want %d", exp, first.U32(24), first.U32(24))
	}

	// A duplicate of the held CmdSN is dropped silently.
	dup := i.cmdPDU(read10(8, 1), true, 512, nil, true)
	dup.SetU32(24, w.U32(24))
	i.cmdSN--
	i.send(dup)
	i.expectSilence(100 * time.Millisecond)

	// The missing command arrives: both are delivered, in CmdSN order (they then run
	// concurrently, as SIMPLE tasks may, so their answers come in any order).
	i.send(first)
	answered := map[uint32]bool{}
	for len(answered) < 2 {
		r := i.recv()
		if r.Opcode() == iscsi.OpDataIn && r.Flags()&iscsi.FlagStatus == 0 {
			continue
		}
		if r.BHS[3] != 0 || (r.ITT() != first.ITT() && r.ITT() != w.ITT()) {
			t.Fatalf("got %s ITT %d status %#x, want GOOD for ITT %d and %d", r.Opcode(), r.ITT(), r.BHS[3], first.ITT(), w.ITT())
		}
		answered[r.ITT()] = true
	}
	res := i.read(0, 2)
	if res.status != 0 || !bytes.Equal(res.data, data) {
		t.Errorf("read after the held write: got status %#x, data equal %v", res.status, bytes.Equal(res.data, data))
	}
	if want := w.U32(24) + 2; i.expCmdSN() != want {
		t.Errorf("got ExpCmdSN %d after the gap closed, want %d", i.expCmdSN(), want)
	}
}

func TestCmdSNHeldR2T(t *testing.T) {
	s := startServer(t, testConfig("itmem:reorder-r2t:1048576"))
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit, keys: []iscsi.KV{{Key: "ImmediateData", Value: "No"}}})
	// With InitialR2T=Yes a held write gets its R2T only once delivered.
	first := i.cmdPDU(make([]byte, 6), false, 0, nil, true) // TEST UNIT READY, CmdSN n
	w := i.cmdPDU(write10(4, 1), false, 512, nil, true)
	i.send(w)
	i.expectSilence(150 * time.Millisecond)
	i.send(first)
	var gotR2T, gotTUR bool
	for !gotR2T || !gotTUR {
		r := i.recv()
		switch {
		case r.Opcode() == iscsi.OpR2T && r.ITT() == w.ITT():
			gotR2T = true
		case r.Opcode() == iscsi.OpSCSIResponse && r.ITT() == first.ITT() && r.BHS[3] == 0:
			gotTUR = true
		default:
			t.Fatalf("got %s for ITT %d status %#x, want GOOD for TEST UNIT READY and an R2T for the write", r.Opcode(), r.ITT(), r.BHS[3])
		}
	}
}

func TestCmdSNAbortHeld(t *testing.T) {
	s := startServer(t, testConfig("itmem:reorder-abort:1048576"))
	i := dial(t, s.Addrs()[0])
	i.mustLogin(loginOpts{target: testIQN, initiator: testInit})
	first := i.cmdPDU(read10(0, 1), true, 512, nil, true)
	held := i.cmdPDU(read10(1, 1), true, 512, nil, true)
	i.send(held)
	var p iscsi.PDU
	p.BHS[0] = byte(iscsi.OpTaskMgmt) | iscsi.ImmediateBit
	p.BHS[1] = iscsi.FlagFinal | tmfAbortTask
	p.SetU32(16, i.nextITT())
	p.SetU32(20, held.ITT())
	p.SetU32(24, i.cmdSN)
	p.SetU32(32, held.U32(24))
	i.send(&p)
	r := i.recv()
	if r.Opcode() != iscsi.OpTaskMgmtResp || r.BHS[2] != tmfComplete {
		t.Fatalf("got %s response %d, want TMF response 0 for the held task", r.Opcode(), r.BHS[2])
	}
	// The gap closes: the aborted task is never answered, the window moves past it.
	i.send(first)
	if res := i.readResult(first.ITT()); res.status != 0 {
		t.Fatalf("read: got status %#x", res.status)
	}
	next := i.read(2, 1)
	if next.status != 0 {
		t.Fatalf("read after the aborted held task: got status %#x", next.status)
	}
}

// FuzzCmdWindow feeds arbitrary arrival orders: whatever arrives, non-immediate
// commands are delivered exactly once each, in CmdSN order, with no gap.
func FuzzCmdWindow(f *testing.F) {
	f.Add([]byte{1, 2, 0, 3}, uint32(5))
	f.Add([]byte{7, 6, 5, 4, 3, 2, 1, 0}, uint32(0xfffffffc))
	f.Add([]byte{0x80, 1, 1, 0, 200}, uint32(1))
	f.Fuzz(func(t *testing.T, arrivals []byte, start uint32) {
		var w cmdWindow
		w.init(start, 16)
		var got []uint32
		for _, a := range arrivals {
			imm := a&0x80 != 0
			sn := start + uint32(int8(a<<1)>>1) // offsets -64..63 around the start
			if !w.receive(sn, imm, false) {
				continue
			}
			w.deliver(sn, imm, deliverFunc(func() {
				if !imm {
					got = append(got, sn)
				}
			}))
		}
		for k, sn := range got {
			if sn != start+uint32(k) {
				t.Fatalf("delivery %d: got CmdSN %d, want %d (order %v)", k, sn, start+uint32(k), got)
			}
		}
		if exp, _ := w.sns(); exp != start+uint32(len(got)) {
			t.Fatalf("got ExpCmdSN %d after %d deliveries from %d", exp, len(got), start)
		}
	})
}
