package scsi

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestUnitAttentionPowerOn(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	n := testNexus("a", "1", 1)
	inq := []byte{opInquiry, 0, 0, 0, 36, 0}
	wantGood(t, "INQUIRY before UA", run(t, lu, n, inq, nil, 36))
	wantSense(t, "first TUR", run(t, lu, n, make([]byte, 6), nil, 0), senseUnitAttention, ascPowerOnReset)
	wantGood(t, "second TUR", run(t, lu, n, make([]byte, 6), nil, 0))
	lu.CapacityChanged()
	wantSense(t, "after CapacityChanged", run(t, lu, n, cdb10(opRead10, 0, 1), nil, 512), senseUnitAttention, ascCapacityChanged)
	other := testNexus("b", "2", 1)
	ready(t, lu, other)
	lu.Reset(n)
	wantSense(t, "resetting nexus", run(t, lu, n, make([]byte, 6), nil, 0), senseUnitAttention, ascPowerOnReset)
	wantSense(t, "other nexus after reset", run(t, lu, other, make([]byte, 6), nil, 0), senseUnitAttention, ascPowerOnReset)
}

func TestCommandSense(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	tests := []struct {
		name string
		cdb  []byte
		out  []byte
		in   uint32
		key  byte
		asc  uint16
	}{
		{"invalid opcode", []byte{0xff, 0, 0, 0, 0, 0}, nil, 0, senseIllegalRequest, ascInvalidOpcode},
		{"read beyond end", cdb10(opRead10, 64, 1), nil, 512, senseIllegalRequest, ascLBAOutOfRange},
		{"read LBA past end, zero length", cdb10(opRead10, 65, 0), nil, 0, senseIllegalRequest, ascLBAOutOfRange},
		{"read16 wraps", cdb16(opRead16, 1<<63, 2), nil, 1024, senseIllegalRequest, ascLBAOutOfRange},
		{"write beyond end", cdb10(opWrite10, 63, 2), make([]byte, 1024), 0, senseIllegalRequest, ascLBAOutOfRange},
		{"read10 rdprotect", []byte{opRead10, 0x20, 0, 0, 0, 0, 0, 0, 1, 0}, nil, 512, senseIllegalRequest, ascInvalidFieldCDB},
		{"inquiry page without EVPD", []byte{opInquiry, 0, 0x80, 0, 36, 0}, nil, 36, senseIllegalRequest, ascInvalidFieldCDB},
		{"unknown VPD page", []byte{opInquiry, 1, 0x55, 0, 36, 0}, nil, 36, senseIllegalRequest, ascInvalidFieldCDB},
		{"mode sense saved", []byte{opModeSense6, 0, 0xc8, 0, 255, 0}, nil, 255, senseIllegalRequest, ascSavingNotSupported},
		{"mode sense unknown page", []byte{opModeSense6, 0, 0x05, 0, 255, 0}, nil, 255, senseIllegalRequest, ascInvalidFieldCDB},
		{"unmap anchor", []byte{opUnmap, 1, 0, 0, 0, 0, 0, 0, 24, 0}, make([]byte, 24), 0, senseIllegalRequest, ascInvalidFieldCDB},
		{"unmap short list", []byte{opUnmap, 0, 0, 0, 0, 0, 0, 0, 4, 0}, make([]byte, 4), 0, senseIllegalRequest, ascParamListLength},
		{"write same zero blocks", cdb10(opWriteSame10, 0, 0), make([]byte, 512), 0, senseIllegalRequest, ascInvalidFieldCDB},
		{"get lba status past end", append(cdb16(opServiceActionIn16, 64, 24), 0)[:16], nil, 24, senseIllegalRequest, ascLBAOutOfRange},
		{"pr out short list", []byte{opPROut, 0, 0, 0, 0, 0, 0, 0, 8, 0}, make([]byte, 8), 0, senseIllegalRequest, ascParamListLength},
		{"pr in bad action", []byte{opPRIn, 5, 0, 0, 0, 0, 0, 0, 8, 0}, nil, 8, senseIllegalRequest, ascInvalidFieldCDB},
		{"verify bytchk 2", []byte{opVerify10, 0x04, 0, 0, 0, 0, 0, 0, 1, 0}, make([]byte, 512), 0, senseIllegalRequest, ascInvalidFieldCDB},
	}
	tests[13].cdb[1] = saGetLBAStatus
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantSense(t, tt.name, run(t, lu, n, tt.cdb, tt.out, tt.in), tt.key, tt.asc)
		})
	}
}

func TestInvalidFieldPointer(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	r := run(t, lu, n, []byte{opInquiry, 0, 0x80, 0, 36, 0}, nil, 36)
	wantSense(t, "inquiry", r, senseIllegalRequest, ascInvalidFieldCDB)
	if got, want := r.Sense[15:18], []byte{0xc0, 0, 2}; !bytes.Equal(got, want) {
		t.Errorf("got sense-key specific %x, want %x", got, want)
	}
}

func TestWriteProtected(t *testing.T) {
	lu, dev := newTestLU(t, 64, LUConfig{})
	dev.SetReadOnly(true)
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	wantSense(t, "write10", run(t, lu, n, cdb10(opWrite10, 0, 1), make([]byte, 512), 0), senseDataProtect, ascWriteProtected)
	r := run(t, lu, n, []byte{opModeSense6, 0x08, 0x3f, 0, 255, 0}, nil, 255)
	wantGood(t, "mode sense", r)
	if r.DataIn[2]&0x80 == 0 {
		t.Errorf("got device-specific %#x, want WP bit", r.DataIn[2])
	}
}

func TestResiduals(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	tests := []struct {
		name           string
		cdb            []byte
		out            []byte
		in             uint32
		under, over    bool
		residual, nout uint32
	}{
		{"read 1 block, expect 0", cdb10(opRead10, 0, 1), nil, 0, false, true, 512, 0},
		{"read 1 block, expect 10000", cdb10(opRead10, 0, 1), nil, 10000, true, false, 10000 - 512, 512},
		{"read 2 blocks, expect 1", cdb10(opRead10, 0, 2), nil, 512, false, true, 512, 512},
		{"write 1 block, send 200", cdb10(opWrite10, 0, 1), make([]byte, 200), 0, false, true, 312, 0},
		{"write 1 block, send 2", cdb10(opWrite10, 0, 1), make([]byte, 1024), 0, true, false, 512, 0},
		{"inquiry short allocation", []byte{opInquiry, 0, 0, 0, 36, 0}, nil, 100, true, false, 64, 36},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, lu, n, tt.cdb, tt.out, tt.in)
			wantGood(t, tt.name, r)
			if r.Underflow != tt.under || r.Overflow != tt.over || r.Residual != tt.residual {
				t.Errorf("got under=%v over=%v residual=%d, want %v %v %d", r.Underflow, r.Overflow, r.Residual, tt.under, tt.over, tt.residual)
			}
			if uint32(len(r.DataIn)) != tt.nout {
				t.Errorf("got %d bytes of data-in, want %d", len(r.DataIn), tt.nout)
			}
		})
	}
}

func TestWriteOnlyWhatWasSent(t *testing.T) {
	lu, dev := newTestLU(t, 64, LUConfig{})
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	wantGood(t, "write aa", run(t, lu, n, cdb10(opWrite10, 0, 2), fill(1024, 'a'), 0))
	wantGood(t, "write bb short", run(t, lu, n, cdb10(opWrite10, 0, 2), fill(512, 'b'), 0))
	got := make([]byte, 1024)
	dev.ReadAt(got, 0)
	if !bytes.Equal(got, append(fill(512, 'b'), fill(512, 'a')...)) {
		t.Errorf("got %q..., want first block b, second a", got[510:514])
	}
}

func TestReadCapacityAndInquiry(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{Serial: "abc123"})
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	r := run(t, lu, n, cdb10(opReadCapacity10, 0, 0), nil, 8)
	wantGood(t, "read capacity 10", r)
	if got := binary.BigEndian.Uint32(r.DataIn); got != 63 {
		t.Errorf("got last LBA %d, want 63", got)
	}
	rc := cdb16(opServiceActionIn16, 0, 32)
	rc[1] = saReadCapacity16
	r = run(t, lu, n, rc, nil, 32)
	wantGood(t, "read capacity 16", r)
	if r.DataIn[14]&0x80 == 0 {
		t.Errorf("got byte 14 %#x, want LBPME for a Mem (Unmapper) device", r.DataIn[14])
	}
	r = run(t, lu, n, []byte{opInquiry, 0, 0, 0, 96, 0}, nil, 96)
	wantGood(t, "standard inquiry", r)
	if r.DataIn[5]&0x30 != 0x10 || r.DataIn[7]&0x02 == 0 || r.DataIn[2] != 6 {
		t.Errorf("got bytes 2..7 %x, want SPC-4, TPGS implicit, CmdQue", r.DataIn[2:8])
	}
	r = run(t, lu, n, []byte{opInquiry, 1, 0x80, 0, 255, 0}, nil, 255)
	if got := string(r.DataIn[4:]); got != "abc123" {
		t.Errorf("got serial %q, want abc123", got)
	}
	d83 := run(t, lu, n, []byte{opInquiry, 1, 0x83, 0, 255, 0}, nil, 255).DataIn
	lu2, _ := newTestLU(t, 64, LUConfig{Serial: "abc123"})
	n2 := testNexus("a", "1", 2)
	d83b := run(t, lu2, n2, []byte{opInquiry, 1, 0x83, 0, 255, 0}, nil, 255).DataIn
	if !bytes.Equal(d83[4:24], d83b[4:24]) || d83[8]>>4 != 6 {
		t.Errorf("NAA designator differs across units/ports with one serial: %x vs %x", d83[4:24], d83b[4:24])
	}
	if !bytes.Contains(d83, []byte{0x51, 0x94, 0, 4, 0, 0, 0, 1}) || !bytes.Contains(d83b, []byte{0x51, 0x94, 0, 4, 0, 0, 0, 2}) {
		t.Errorf("relative target port designator missing: %x", d83)
	}
}

func TestCompareAndWrite(t *testing.T) {
	lu, dev := newTestLU(t, 64, LUConfig{})
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	caw := func(lba uint64, nb byte) []byte {
		c := cdb16(opCompareAndWrite, lba, 0)
		c[10], c[11], c[12], c[13] = 0, 0, 0, nb
		return c
	}
	wantGood(t, "write A", run(t, lu, n, cdb10(opWrite10, 4, 1), fill(512, 'A'), 0))
	wantGood(t, "caw A->B", run(t, lu, n, caw(4, 1), append(fill(512, 'A'), fill(512, 'B')...), 0))
	cur := append(fill(100, 'B'), fill(412, 'X')...)
	r := run(t, lu, n, caw(4, 1), append(cur, fill(512, 'C')...), 0)
	wantSense(t, "caw miscompare", r, senseMiscompare, ascMiscompareVerify)
	if r.Sense[0]&0x80 == 0 || binary.BigEndian.Uint32(r.Sense[3:]) != 100 {
		t.Errorf("got information %x (valid %v), want offset 100", r.Sense[3:7], r.Sense[0]&0x80 != 0)
	}
	got := make([]byte, 512)
	dev.ReadAt(got, 4*512)
	if !bytes.Equal(got, fill(512, 'B')) {
		t.Errorf("block changed by a failed COMPARE AND WRITE")
	}
	wantSense(t, "caw wrong data length", run(t, lu, n, caw(4, 1), fill(512, 'B'), 0), senseIllegalRequest, ascInvalidFieldCDB)
}

func TestThinProvisioning(t *testing.T) {
	lu, dev := newTestLU(t, 64, LUConfig{})
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	wantGood(t, "write", run(t, lu, n, cdb10(opWrite10, 0, 16), fill(16*512, 0xff), 0))
	list := make([]byte, 24)
	binary.BigEndian.PutUint16(list, 22)
	binary.BigEndian.PutUint16(list[2:], 16)
	binary.BigEndian.PutUint64(list[8:], 4)
	binary.BigEndian.PutUint32(list[16:], 4)
	wantGood(t, "unmap", run(t, lu, n, []byte{opUnmap, 0, 0, 0, 0, 0, 0, 0, 24, 0}, list, 0))
	got := make([]byte, 4*512)
	dev.ReadAt(got, 4*512)
	if !bytes.Equal(got, make([]byte, len(got))) {
		t.Errorf("unmapped blocks do not read as zero")
	}
	g := cdb16(opServiceActionIn16, 0, 64)
	g[1] = saGetLBAStatus
	r := run(t, lu, n, g, nil, 64)
	wantGood(t, "get lba status", r)
	if len(r.DataIn) < 24 {
		t.Fatalf("got %d bytes, want >= 24", len(r.DataIn))
	}
	if lba, cnt, st := binary.BigEndian.Uint64(r.DataIn[8:]), binary.BigEndian.Uint32(r.DataIn[16:]), r.DataIn[20]; lba != 0 || cnt != 4 || st != 0 {
		t.Errorf("first descriptor: got lba %d count %d status %d, want 0 4 mapped", lba, cnt, st)
	}
	if lba, st := binary.BigEndian.Uint64(r.DataIn[24:]), r.DataIn[36]; lba != 4 || st != 1 {
		t.Errorf("second descriptor: got lba %d status %d, want 4 deallocated", lba, st)
	}
	ws := cdb16(opWriteSame16, 8, 8)
	ws[1] = 0x08
	wantGood(t, "write same unmap", run(t, lu, n, ws, make([]byte, 512), 0))
	ws = cdb16(opWriteSame16, 20, 3)
	wantGood(t, "write same data", run(t, lu, n, ws, fill(512, 7), 0))
	got = make([]byte, 3*512)
	dev.ReadAt(got, 20*512)
	if !bytes.Equal(got, fill(3*512, 7)) {
		t.Errorf("write same did not replicate the block")
	}
}

func TestModeSelectChangesWCE(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	a, b := testNexus("a", "1", 1), testNexus("b", "2", 1)
	ready(t, lu, a)
	ready(t, lu, b)
	r := run(t, lu, a, []byte{opModeSense10, 0x08, 0x08, 0, 0, 0, 0, 0, 255, 0}, nil, 255)
	wantGood(t, "mode sense caching", r)
	page := bytes.Clone(r.DataIn[8:])
	if page[0] != 0x08 || len(page) != 20 {
		t.Fatalf("got page %x, want caching page", page)
	}
	page[2] ^= 0x04
	list := append(make([]byte, 8), page...)
	wantGood(t, "mode select", run(t, lu, a, []byte{opModeSelect10, 0x10, 0, 0, 0, 0, 0, 0, byte(len(list)), 0}, list, 0))
	wantSense(t, "other nexus", run(t, lu, b, make([]byte, 6), nil, 0), senseUnitAttention, ascModeParamsChanged)
	wantGood(t, "selecting nexus", run(t, lu, a, make([]byte, 6), nil, 0))
	page[3] = 0xff // not changeable
	list = append(make([]byte, 8), page...)
	wantSense(t, "mode select unchangeable", run(t, lu, a, []byte{opModeSelect10, 0x10, 0, 0, 0, 0, 0, 0, byte(len(list)), 0}, list, 0), senseIllegalRequest, ascInvalidFieldParam)
}

func TestReportLUNsAndUnmapped(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	luns := StaticLUNs{0: lu, 3: lu}
	n := testNexus("a", "1", 1)
	var resp Response
	cmd := &Command{Nexus: n, CDB: []byte{opReportLUNs, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, ExpectedDataIn: 256}
	Dispatcher{}.Execute(t.Context(), luns, cmd, &resp)
	wantGood(t, "report luns", &resp)
	if got := binary.BigEndian.Uint32(resp.DataIn); got != 16 || resp.DataIn[17] != 3 {
		t.Errorf("got %x, want LUNs 0 and 3", resp.DataIn)
	}
	cmd = &Command{Nexus: n, LUN: 7, CDB: []byte{opInquiry, 0, 0, 0, 36, 0}, ExpectedDataIn: 36}
	Dispatcher{}.Execute(t.Context(), luns, cmd, &resp)
	wantGood(t, "inquiry unmapped", &resp)
	if resp.DataIn[0] != 0x7f {
		t.Errorf("got peripheral byte %#x, want 0x7f", resp.DataIn[0])
	}
	cmd = &Command{Nexus: n, LUN: 7, CDB: make([]byte, 6)}
	Dispatcher{}.Execute(t.Context(), luns, cmd, &resp)
	wantSense(t, "tur unmapped", &resp, senseIllegalRequest, ascLUNotSupported)
}

func TestReportSupportedOpcodes(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	c := []byte{opMaintenanceIn, saReportOpcodes, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0}
	r := run(t, lu, n, c, nil, 4096)
	wantGood(t, "all commands", r)
	if got := int(binary.BigEndian.Uint32(r.DataIn)); got != len(r.DataIn)-4 || got%8 != 0 || got == 0 {
		t.Errorf("got command data length %d for %d bytes", got, len(r.DataIn))
	}
	c = []byte{opMaintenanceIn, saReportOpcodes, 0x81, opRead16, 0, 0, 0, 0, 1, 0, 0, 0}
	r = run(t, lu, n, c, nil, 256)
	wantGood(t, "one command", r)
	if r.DataIn[1] != 0x83 || binary.BigEndian.Uint16(r.DataIn[2:]) != 16 || r.DataIn[4] != opRead16 || len(r.DataIn) != 4+16+12 {
		t.Errorf("got %x, want supported READ(16) with timeouts", r.DataIn)
	}
	c = []byte{opMaintenanceIn, saReportOpcodes, 0x01, opPRIn, 0, 0, 0, 0, 1, 0, 0, 0}
	wantSense(t, "one command form for a service-action opcode", run(t, lu, n, c, nil, 256), senseIllegalRequest, ascInvalidFieldCDB)
}

func TestReportTargetPortGroups(t *testing.T) {
	lu, _ := newTestLU(t, 64, LUConfig{})
	n := testNexus("a", "1", 1)
	ready(t, lu, n)
	for _, ext := range []bool{false, true} {
		c := []byte{opMaintenanceIn, saReportTPG, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}
		hdr := 4
		if ext {
			c[1] |= 0x20
			hdr = 8
		}
		r := run(t, lu, n, c, nil, 256)
		wantGood(t, "rtpg", r)
		if got, want := len(r.DataIn), hdr+2*12; got != want {
			t.Fatalf("extended=%v: got %d bytes, want %d", ext, got, want)
		}
		if st := r.DataIn[hdr+12] & 0x0f; st != byte(ALUAActiveNonOptimized) {
			t.Errorf("got second group state %d, want non-optimized", st)
		}
	}
}
