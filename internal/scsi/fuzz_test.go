package scsi

import (
	"context"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// FuzzExecute feeds arbitrary CDBs and data-out through Dispatcher.Execute on a small
// Mem device. It must never panic, and data-in never exceeds the expected length.
// Every parameter-list decoder (UNMAP, PR OUT, MODE SELECT, VERIFY/CAW data) is
// reached through it.
func FuzzExecute(f *testing.F) {
	seeds := [][]byte{
		{opInquiry, 1, 0x83, 0, 255, 0},
		cdb10(opRead10, 0, 1),
		cdb10(opWrite10, 1, 1),
		{opUnmap, 0, 0, 0, 0, 0, 0, 0, 24, 0},
		{opPROut, 0, 0, 0, 0, 0, 0, 0, 24, 0},
		{opPROut, 7, 1, 0, 0, 0, 0, 0, 60, 0},
		{opModeSelect10, 0x10, 0, 0, 0, 0, 0, 0, 28, 0},
		{opModeSense6, 0, 0x3f, 0, 255, 0},
		{opMaintenanceIn, saReportOpcodes, 0x80, 0, 0, 0, 0, 0, 0x10, 0, 0, 0},
		{opReportLUNs, 0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0},
		cdb16(opCompareAndWrite, 0, 1),
		{opMaintenanceIn, saReportTPG, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
		{opMaintenanceIn, saReportTPG | 0x20, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0},
	}
	for _, s := range seeds {
		f.Add(s, make([]byte, 40), uint32(512), uint64(0))
	}
	// Bits 8-9 of lun pick the ALUA state of the nexus' port group.
	f.Add(cdb10(opRead10, 0, 1), []byte{}, uint32(512), uint64(ALUAStandby)<<8)
	f.Add([]byte{opMaintenanceIn, saReportTPG, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, []byte{}, uint32(256), uint64(ALUAUnavailable)<<8)
	f.Fuzz(func(t *testing.T, cdb, data []byte, expIn uint32, lun uint64) {
		if len(cdb) > 32 || len(data) > 1<<16 {
			return
		}
		expIn %= 1 << 17
		dev := blockdev.NewMem(16*512, 512)
		lu, err := NewLogicalUnit(dev, LUConfig{Serial: "fuzz"})
		if err != nil {
			t.Fatal(err)
		}
		n := testNexus("f", "1", 1)
		n.Groups[0].State = PortGroupState(lun >> 8 & 3)
		luns := StaticLUNs{0: lu}
		for i := 0; i < 2; i++ { // the second run is past the power-on UA
			cmd := &Command{Nexus: n, LUN: lun % 2, CDB: cdb, DataOut: data, ExpectedDataIn: expIn, ExpectedDataOut: uint32(len(data))}
			var resp Response
			Dispatcher{}.Execute(context.Background(), luns, cmd, &resp)
			if uint32(len(resp.DataIn)) > expIn {
				t.Fatalf("got %d bytes of data-in, want at most %d", len(resp.DataIn), expIn)
			}
			if resp.Status == StatusCheckCondition && len(resp.Sense) != senseLen {
				t.Fatalf("got %d bytes of sense, want %d", len(resp.Sense), senseLen)
			}
		}
	})
}

// FuzzDecodePROut checks the PERSISTENT RESERVE OUT decoder directly.
func FuzzDecodePROut(f *testing.F) {
	cdb, d := prout(0, 0, 0, 1, 0x08)
	tid := encodeTransportID(prIdent{Initiator: "iqn.x", ISIDPort: "iqn.x,i,0x1"})
	f.Add(cdb, append(append(d, 0, 0, 0, byte(len(tid))), tid...))
	f.Fuzz(func(t *testing.T, cdb, d []byte) {
		if len(cdb) < 10 {
			return
		}
		p, c := decodePROut(cdb, d)
		if c == nil && p.sa == 7 && len(p.tids) != 1 {
			t.Fatalf("REGISTER AND MOVE decoded with %d TransportIDs", len(p.tids))
		}
	})
}

// FuzzDecodeUnmapList checks the UNMAP parameter list decoder directly.
func FuzzDecodeUnmapList(f *testing.F) {
	f.Add(make([]byte, 24))
	f.Fuzz(func(t *testing.T, d []byte) {
		descs, c := decodeUnmapList(d)
		if c == nil && len(descs)*16+8 > len(d) {
			t.Fatalf("got %d descriptors from %d bytes", len(descs), len(d))
		}
	})
}
