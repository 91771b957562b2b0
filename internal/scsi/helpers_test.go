package scsi

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

const testBS = 512

// newTestLU returns a logical unit over a Mem device of blocks blocks.
func newTestLU(t testing.TB, blocks int64, cfg LUConfig) (*LogicalUnit, *blockdev.Mem) {
	t.Helper()
	dev := blockdev.NewMem(blocks*testBS, testBS)
	if cfg.Serial == "" {
		cfg.Serial = "serial-1"
	}
	lu, err := NewLogicalUnit(dev, cfg)
	if err != nil {
		t.Fatalf("NewLogicalUnit: %v", err)
	}
	t.Cleanup(func() { lu.Close() })
	return lu, dev
}

func testNexus(init string, isid string, port uint16) *Nexus {
	name := "iqn.2026-11.org.example:" + init
	tp := TargetPort{Name: "iqn.2026-11.org.example:tgt,t,0x" + string(rune('0'+port)), RelativeID: port, GroupID: port}
	return &Nexus{InitiatorPort: name + ",i,0x" + isid, InitiatorName: name, Port: tp,
		Groups: []PortGroup{{ID: 1, State: ALUAActiveOptimized, PortIDs: []uint16{1}}, {ID: 2, State: ALUAActiveNonOptimized, PortIDs: []uint16{2}}}}
}

// run executes one command on LUN 0 of lu and returns the response.
func run(t testing.TB, lu *LogicalUnit, n *Nexus, cdb []byte, out []byte, expIn uint32) *Response {
	t.Helper()
	cmd := &Command{Nexus: n, CDB: cdb, DataOut: out, ExpectedDataIn: expIn, ExpectedDataOut: uint32(len(out))}
	var resp Response
	Dispatcher{}.Execute(context.Background(), StaticLUNs{0: lu}, cmd, &resp)
	return &resp
}

// ready executes TEST UNIT READY until the nexus has no pending unit attention.
func ready(t testing.TB, lu *LogicalUnit, n *Nexus) {
	t.Helper()
	for i := 0; i < 10; i++ {
		if r := run(t, lu, n, make([]byte, 6), nil, 0); r.Status == StatusGood {
			return
		}
	}
	t.Fatalf("TEST UNIT READY never GOOD")
}

// wantSense fails unless r is CHECK CONDITION with key and asc (ASC<<8|ASCQ).
func wantSense(t testing.TB, what string, r *Response, key byte, asc uint16) {
	t.Helper()
	if r.Status != StatusCheckCondition || len(r.Sense) < 14 {
		t.Fatalf("%s: got status %#x sense %x, want CHECK CONDITION %x/%04x", what, r.Status, r.Sense, key, asc)
	}
	if got := r.Sense[2] & 0x0f; got != key {
		t.Errorf("%s: got sense key %#x, want %#x", what, got, key)
	}
	if got := uint16(r.Sense[12])<<8 | uint16(r.Sense[13]); got != asc {
		t.Errorf("%s: got ASC/ASCQ %04x, want %04x", what, got, asc)
	}
}

func wantGood(t testing.TB, what string, r *Response) {
	t.Helper()
	if r.Status != StatusGood {
		t.Fatalf("%s: got status %#x sense %x, want GOOD", what, r.Status, r.Sense)
	}
}

func cdb10(op byte, lba uint32, n uint16) []byte {
	c := make([]byte, 10)
	c[0] = op
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], n)
	return c
}

func cdb16(op byte, lba uint64, n uint32) []byte {
	c := make([]byte, 16)
	c[0] = op
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], n)
	return c
}

func fill(n int, b byte) []byte {
	d := make([]byte, n)
	for i := range d {
		d[i] = b
	}
	return d
}
