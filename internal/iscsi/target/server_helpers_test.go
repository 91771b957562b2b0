package target

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/iscsi"
	"github.com/rampart-storage/rampart/internal/volume"
)

// Test volumes: "itmem:NAME:SIZE[:DELAYMS]" is an in-memory device, shared by name.
var (
	memMu   sync.Mutex
	memDevs = map[string]blockdev.Device{}
)

// slowDev delays every read and write.
type slowDev struct {
	blockdev.Device
	delay time.Duration
}

func (d slowDev) ReadAt(p []byte, off int64) (int, error) {
	time.Sleep(d.delay)
	return d.Device.ReadAt(p, off)
}

func (d slowDev) WriteAt(p []byte, off int64) (int, error) {
	time.Sleep(d.delay)
	return d.Device.WriteAt(p, off)
}

func init() {
	volume.Register("itmem", func(ctx context.Context, spec string, opts volume.Options) (blockdev.Device, error) {
		parts := strings.Split(spec, ":")
		if len(parts) < 3 {
			return nil, fmt.Errorf("itmem spec %q", spec)
		}
		size, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil {
			return nil, err
		}
		memMu.Lock()
		defer memMu.Unlock()
		d := memDevs[spec]
		if d == nil {
			d = blockdev.NewMem(size, 512)
			if len(parts) > 3 {
				ms, _ := strconv.Atoi(parts[3])
				d = slowDev{d, time.Duration(ms) * time.Millisecond}
			}
			memDevs[spec] = d
		}
		return d, nil
	})
}

const (
	testIQN  = "iqn.2026-11.org.rampart:disk1"
	testInit = "iqn.2026-11.org.rampart:client1"
)

// testConfig is one target on 127.0.0.1:0 with one 4 MiB LUN and an ACL for testInit.
func testConfig(volumeSpec string) Config {
	return Config{
		Backstores: []Backstore{{Name: "disk", Volume: volumeSpec, Serial: "0123456789"}},
		Targets: []Target{{
			IQN:          testIQN,
			PortalGroups: []PortalGroup{{Tag: 1, Portals: []string{"127.0.0.1:0"}}},
			LUNs:         []LUN{{LUN: 0, Backstore: "disk"}},
			ACLs:         []ACL{{InitiatorIQN: testInit}},
		}},
	}
}

func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(Options{Config: cfg, NopInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	<-s.Ready()
	return s
}

// ini is a minimal in-test initiator speaking raw PDUs.
type ini struct {
	t         testing.TB
	nc        net.Conn
	br        *bufio.Reader
	d         iscsi.Digests
	isid      [6]byte
	tsih      uint16
	cmdSN     uint32
	expStatSN uint32
	itt       uint32
	maxCmdSN  uint32
	// lastExpCmdSN is the ExpCmdSN of the last PDU received.
	lastExpCmdSN uint32
	params       map[string]string
}

func dial(t testing.TB, addr net.Addr) *ini {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &ini{t: t, nc: nc, br: bufio.NewReader(nc), isid: [6]byte{0x80, 1, 2, 3, 4, 5}, cmdSN: 1, itt: 1, params: map[string]string{}}
}

func (i *ini) send(p *iscsi.PDU) {
	i.t.Helper()
	if err := iscsi.WritePDU(i.nc, p, i.d); err != nil {
		i.t.Fatalf("send %s: %v", p.Opcode(), err)
	}
}

func (i *ini) recv() *iscsi.PDU {
	i.t.Helper()
	p, err := i.tryRecv()
	if err != nil {
		i.t.Fatalf("receive: %v", err)
	}
	return p
}

func (i *ini) tryRecv() (*iscsi.PDU, error) {
	p := new(iscsi.PDU)
	if err := iscsi.ReadPDU(i.br, p, i.d, 1<<24); err != nil {
		return nil, err
	}
	if op := p.Opcode(); op != iscsi.OpDataIn || p.Flags()&iscsi.FlagStatus != 0 {
		if op != iscsi.OpR2T && !(op == iscsi.OpNOPIn && p.ITT() == iscsi.ReservedTag) {
			i.expStatSN = p.U32(24) + 1
		}
	}
	i.maxCmdSN = p.U32(32)
	i.lastExpCmdSN = p.U32(28)
	return p, nil
}

// loginPDU sends one Login request and returns the response and its keys.
func (i *ini) loginPDU(csg, nsg byte, transit bool, kvs []iscsi.KV) (*iscsi.PDU, map[string]string) {
	i.t.Helper()
	var p iscsi.PDU
	p.BHS[0] = byte(iscsi.OpLogin) | iscsi.ImmediateBit
	p.BHS[1] = csg << 2
	if transit {
		p.BHS[1] |= iscsi.FlagTransit | nsg
	}
	copy(p.BHS[8:14], i.isid[:])
	p.SetU16(14, i.tsih)
	p.SetU32(16, i.itt)
	p.SetU32(24, i.cmdSN)
	p.SetU32(28, i.expStatSN)
	p.Data = iscsi.AppendText(nil, kvs)
	i.send(&p)
	r := i.recv()
	if r.Opcode() != iscsi.OpLoginResp {
		i.t.Fatalf("got %s, want Login Response", r.Opcode())
	}
	got, err := iscsi.ParseText(r.Data)
	if err != nil {
		i.t.Fatalf("login response text: %v", err)
	}
	m := map[string]string{}
	for _, kv := range got {
		m[kv.Key] = kv.Value
	}
	return r, m
}

func loginStatus(r *iscsi.PDU) uint16 { return uint16(r.BHS[36])<<8 | uint16(r.BHS[37]) }

// loginOpts describe a login of the in-test initiator.
type loginOpts struct {
	target, initiator string
	discovery         bool
	chap, mutual      *CHAP
	keys              []iscsi.KV // operational keys
	wrongCHAPResponse bool
}

// login runs a whole login and returns its final status (0 on success).
func (i *ini) login(o loginOpts) uint16 {
	i.t.Helper()
	names := []iscsi.KV{{Key: "InitiatorName", Value: o.initiator}}
	if o.discovery {
		names = append(names, iscsi.KV{Key: "SessionType", Value: "Discovery"})
	} else if o.target != "" {
		names = append(names, iscsi.KV{Key: "SessionType", Value: "Normal"}, iscsi.KV{Key: "TargetName", Value: o.target})
	}
	if o.chap == nil {
		r, _ := i.loginPDU(0, 1, true, append(names, iscsi.KV{Key: "AuthMethod", Value: "None"}))
		if st := loginStatus(r); st != 0 {
			return st
		}
	} else {
		r, m := i.loginPDU(0, 0, false, append(names, iscsi.KV{Key: "AuthMethod", Value: "CHAP,None"}))
		if st := loginStatus(r); st != 0 {
			return st
		}
		if m["AuthMethod"] != "CHAP" {
			i.t.Fatalf("got AuthMethod=%s, want CHAP", m["AuthMethod"])
		}
		r, m = i.loginPDU(0, 0, false, []iscsi.KV{{Key: "CHAP_A", Value: "5"}})
		if st := loginStatus(r); st != 0 {
			return st
		}
		id, _ := strconv.Atoi(m["CHAP_I"])
		ch, err := iscsi.DecodeBinary(m["CHAP_C"])
		if err != nil {
			i.t.Fatalf("CHAP_C: %v", err)
		}
		resp := iscsi.CHAPResponse(byte(id), o.chap.Secret, ch)
		if o.wrongCHAPResponse {
			resp[0] ^= 1
		}
		kvs := []iscsi.KV{{Key: "CHAP_N", Value: o.chap.User}, {Key: "CHAP_R", Value: iscsi.EncodeBinary(resp)}}
		myID, myCh := byte(7), []byte("0123456789abcdef")
		if o.mutual != nil {
			kvs = append(kvs, iscsi.KV{Key: "CHAP_I", Value: "7"}, iscsi.KV{Key: "CHAP_C", Value: iscsi.EncodeBinary(myCh)})
		}
		r, m = i.loginPDU(0, 1, true, kvs)
		if st := loginStatus(r); st != 0 {
			return st
		}
		if o.mutual != nil {
			got, err := iscsi.DecodeBinary(m["CHAP_R"])
			if err != nil || m["CHAP_N"] != o.mutual.User || !iscsi.CHAPVerify(myID, o.mutual.Secret, myCh, got) {
				i.t.Fatalf("mutual CHAP: got CHAP_N=%s CHAP_R=%s, want the target's valid answer", m["CHAP_N"], m["CHAP_R"])
			}
		}
		if r.Flags()&iscsi.FlagTransit == 0 {
			i.t.Fatal("got no transit after CHAP, want T bit")
		}
	}
	r, m := i.loginPDU(1, 3, true, o.keys)
	if st := loginStatus(r); st != 0 {
		return st
	}
	if r.Flags()&iscsi.FlagTransit == 0 || r.Flags()&3 != 3 {
		i.t.Fatalf("got login flags %02x, want transit to full feature phase", r.Flags())
	}
	i.params = m
	i.tsih = r.U16(14)
	if i.tsih == 0 {
		i.t.Fatal("got TSIH 0 at the end of a login")
	}
	if m["HeaderDigest"] == "CRC32C" {
		i.d.Header = true
	}
	if m["DataDigest"] == "CRC32C" {
		i.d.Data = true
	}
	return 0
}

func (i *ini) mustLogin(o loginOpts) {
	i.t.Helper()
	if st := i.login(o); st != 0 {
		i.t.Fatalf("login: got status 0x%04x, want 0", st)
	}
	if !o.discovery {
		i.clearUA()
	}
}

// clearUA sends TEST UNIT READY until it is GOOD, consuming the unit attentions
// (POWER ON, RESET) a new nexus first sees.
func (i *ini) clearUA() {
	i.t.Helper()
	for k := 0; k < 5; k++ {
		p := i.cmdPDU(make([]byte, 6), false, 0, nil, true)
		i.send(p)
		r := i.readResult(p.ITT())
		if r.status == 0 {
			return
		}
		if len(r.sense) < 3 || r.sense[2]&0x0f != 0x06 {
			i.t.Fatalf("TEST UNIT READY: got status %#x sense %x, want GOOD or UNIT ATTENTION", r.status, r.sense)
		}
	}
	i.t.Fatal("TEST UNIT READY: unit attentions do not clear")
}

func (i *ini) nextITT() uint32 { i.itt++; return i.itt }

// cmdPDU builds a SCSI Command.
func (i *ini) cmdPDU(cdb []byte, read bool, edtl uint32, imm []byte, final bool) *iscsi.PDU {
	var p iscsi.PDU
	p.BHS[0] = byte(iscsi.OpSCSICommand)
	if final {
		p.BHS[1] = iscsi.FlagFinal
	}
	if read {
		p.BHS[1] |= iscsi.FlagRead
	} else if edtl > 0 {
		p.BHS[1] |= iscsi.FlagWrite
	}
	p.SetU32(16, i.nextITT())
	p.SetU32(20, edtl)
	p.SetU32(24, i.cmdSN)
	i.cmdSN++
	p.SetU32(28, i.expStatSN)
	copy(p.BHS[32:], cdb)
	p.Data = imm
	return &p
}

func read10(lba uint32, blocks uint16) []byte {
	cdb := make([]byte, 10)
	cdb[0] = 0x28
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], blocks)
	return cdb
}

func write10(lba uint32, blocks uint16) []byte {
	cdb := read10(lba, blocks)
	cdb[0] = 0x2a
	return cdb
}

// result is what came back for one command.
type result struct {
	status   byte
	data     []byte
	sense    []byte
	dataPDUs int
	flags    byte
	residual uint32
	r2ts     int
}

// readResult collects Data-In and the status of command itt.
func (i *ini) readResult(itt uint32) result {
	i.t.Helper()
	var res result
	for {
		p := i.recv()
		if p.ITT() != itt {
			i.t.Fatalf("got %s for ITT %d, want ITT %d", p.Opcode(), p.ITT(), itt)
		}
		switch p.Opcode() {
		case iscsi.OpDataIn:
			if off := p.U32(40); int(off) != len(res.data) {
				i.t.Fatalf("got Data-In offset %d, want %d", off, len(res.data))
			}
			if sn := p.U32(36); int(sn) != res.dataPDUs {
				i.t.Fatalf("got DataSN %d, want %d", sn, res.dataPDUs)
			}
			res.data = append(res.data, p.Data...)
			res.dataPDUs++
			if p.Flags()&iscsi.FlagStatus != 0 {
				res.status, res.flags, res.residual = p.BHS[3], p.Flags(), p.U32(44)
				return res
			}
		case iscsi.OpSCSIResponse:
			res.status, res.flags, res.residual = p.BHS[3], p.Flags(), p.U32(44)
			if len(p.Data) >= 2 {
				n := int(binary.BigEndian.Uint16(p.Data))
				res.sense = p.Data[2 : 2+n]
			}
			return res
		default:
			i.t.Fatalf("got %s, want Data-In or SCSI Response", p.Opcode())
		}
	}
}

// write runs a WRITE(10) the way the negotiated parameters allow: immediate data,
// unsolicited Data-Out up to FirstBurstLength, then answers every R2T.
func (i *ini) write(lba uint32, data []byte) result {
	i.t.Helper()
	mrdsl := atoiDefault(i.params["MaxRecvDataSegmentLength"], 8192)
	fbl := atoiDefault(i.params["FirstBurstLength"], 65536)
	imm := i.params["ImmediateData"] != "No"
	ir2t := i.params["InitialR2T"] != "No"
	unsol := 0
	if !ir2t {
		unsol = min(fbl, len(data))
	}
	var immData []byte
	if imm {
		immData = data[:min(len(data), mrdsl, fbl)]
	}
	sent := len(immData)
	p := i.cmdPDU(write10(lba, uint16(len(data)/512)), false, uint32(len(data)), immData, sent >= unsol)
	itt := p.ITT()
	i.send(p)
	dataOut := func(ttt uint32, off, n int) {
		sn := 0
		for pos := off; pos < off+n; {
			k := min(mrdsl, off+n-pos)
			var d iscsi.PDU
			d.BHS[0] = byte(iscsi.OpDataOut)
			if pos+k == off+n {
				d.BHS[1] = iscsi.FlagFinal
			}
			d.SetU32(16, itt)
			d.SetU32(20, ttt)
			d.SetU32(28, i.expStatSN)
			d.SetU32(36, uint32(sn))
			d.SetU32(40, uint32(pos))
			d.Data = data[pos : pos+k]
			i.send(&d)
			pos += k
			sn++
		}
	}
	if sent < unsol {
		dataOut(iscsi.ReservedTag, sent, unsol-sent)
	}
	r2ts := 0
	for {
		p := i.recv()
		if p.Opcode() == iscsi.OpR2T {
			r2ts++
			dataOut(p.U32(20), int(p.U32(40)), int(p.U32(44)))
			continue
		}
		if p.Opcode() != iscsi.OpSCSIResponse {
			i.t.Fatalf("got %s, want R2T or SCSI Response", p.Opcode())
		}
		return result{status: p.BHS[3], flags: p.Flags(), residual: p.U32(44), r2ts: r2ts}
	}
}

func (i *ini) read(lba uint32, blocks uint16) result {
	i.t.Helper()
	p := i.cmdPDU(read10(lba, blocks), true, uint32(blocks)*512, nil, true)
	i.send(p)
	return i.readResult(p.ITT())
}

func atoiDefault(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}
