package iscsi

import (
	"bytes"
	"errors"
	"testing"
)

func TestPDURoundTrip(t *testing.T) {
	for _, d := range []Digests{{}, {Header: true}, {Data: true}, {Header: true, Data: true}} {
		for _, n := range []int{0, 1, 3, 4, 5, 8191} {
			var p PDU
			p.BHS[0] = byte(OpSCSICommand) | ImmediateBit
			p.BHS[1] = FlagFinal | FlagWrite
			p.SetLUN(0x0001000000000000)
			p.SetU32(16, 0xdeadbeef)
			p.AHS = []byte{0, 4, 1, 0, 1, 2, 3, 4}
			p.Data = bytes.Repeat([]byte{0xab}, n)
			var buf bytes.Buffer
			if err := WritePDU(&buf, &p, d); err != nil {
				t.Fatal(err)
			}
			want := BHSLen + 8 + n + pad4(n)
			if d.Header {
				want += 4
			}
			if d.Data && n > 0 {
				want += 4
			}
			if buf.Len() != want {
				t.Errorf("digests %+v data %d: got %d bytes on the wire, want %d", d, n, buf.Len(), want)
			}
			var q PDU
			if err := ReadPDU(&buf, &q, d, 8192); err != nil {
				t.Fatalf("digests %+v data %d: %v", d, n, err)
			}
			if q.BHS != p.BHS || !bytes.Equal(q.AHS, p.AHS) || !bytes.Equal(q.Data, p.Data) {
				t.Errorf("digests %+v data %d: got a different PDU back", d, n)
			}
			if q.Opcode() != OpSCSICommand || !q.Immediate() || q.ITT() != 0xdeadbeef || q.DataSegmentLength() != n {
				t.Errorf("accessors: got op %v imm %v itt %x len %d", q.Opcode(), q.Immediate(), q.ITT(), q.DataSegmentLength())
			}
		}
	}
}

func TestPDUErrors(t *testing.T) {
	var p PDU
	p.BHS[0] = byte(OpNOPOut)
	p.Data = []byte("hello")
	var buf bytes.Buffer
	if err := WritePDU(&buf, &p, Digests{Header: true, Data: true}); err != nil {
		t.Fatal(err)
	}
	wire := buf.Bytes()
	tests := []struct {
		name    string
		corrupt int
		max     int
		want    error
	}{
		{"header digest", 3, 8192, ErrHeaderDigest},
		{"data digest", BHSLen + 4 + 1, 8192, ErrDataDigest},
		{"too long", -1, 4, ErrDataTooLong},
	}
	for _, tt := range tests {
		b := bytes.Clone(wire)
		if tt.corrupt >= 0 {
			b[tt.corrupt] ^= 0xff
		}
		var q PDU
		err := ReadPDU(bytes.NewReader(b), &q, Digests{Header: true, Data: true}, tt.max)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestCRC32C checks the digest against RFC 7143 appendix B.4 (32 bytes of zeroes).
func TestCRC32C(t *testing.T) {
	if got, want := CRC32C(make([]byte, 32)), uint32(0x8a9136aa); got != want {
		t.Errorf("got %08x, want %08x", got, want)
	}
}

func TestParseText(t *testing.T) {
	tests := []struct {
		in      string
		want    []KV
		wantErr bool
	}{
		{"A=1\x00B=\x00", []KV{{"A", "1"}, {"B", ""}}, false},
		{"A=1", []KV{{"A", "1"}}, false},
		{"A=1\x00\x00\x00", []KV{{"A", "1"}}, false},
		{"A=b=c\x00", []KV{{"A", "b=c"}}, false},
		{"=1\x00", nil, true},
		{"novalue\x00", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseText([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: got error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("%q: got %v, want %v", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%q: got %v, want %v", tt.in, got, tt.want)
			}
		}
	}
	if enc := AppendText(nil, []KV{{"A", "1"}, {"B", "x"}}); string(enc) != "A=1\x00B=x\x00" {
		t.Errorf("AppendText: got %q", enc)
	}
}

func TestNegotiate(t *testing.T) {
	lim := DefaultTargetLimits()
	tests := []struct {
		key, value string
		discovery  bool
		want       string // "" = no answer
		check      func(p Params) bool
	}{
		{"HeaderDigest", "CRC32C,None", false, "CRC32C", func(p Params) bool { return p.HeaderDigest }},
		{"HeaderDigest", "None,CRC32C", false, "None", func(p Params) bool { return !p.HeaderDigest }},
		{"DataDigest", "MD5", false, Reject, nil},
		{"InitialR2T", "No", false, "No", func(p Params) bool { return !p.InitialR2T }},
		{"InitialR2T", "Yes", false, "Yes", func(p Params) bool { return p.InitialR2T }},
		{"ImmediateData", "No", false, "No", func(p Params) bool { return !p.ImmediateData }},
		{"ImmediateData", "Maybe", false, Reject, nil},
		{"MaxRecvDataSegmentLength", "4096", false, "", func(p Params) bool { return p.MaxRecvDataSegmentLength == 4096 }},
		{"MaxRecvDataSegmentLength", "12", false, Reject, nil},
		{"MaxBurstLength", "99999999", false, Reject, nil},
		{"MaxBurstLength", "1024", false, "1024", func(p Params) bool { return p.MaxBurstLength == 1024 }},
		{"FirstBurstLength", "16777215", false, "262144", nil},
		{"MaxConnections", "8", false, "1", nil},
		{"DefaultTime2Wait", "0", false, "2", nil},
		{"DefaultTime2Retain", "20", false, "0", nil},
		{"MaxOutstandingR2T", "1", false, "1", nil},
		{"ErrorRecoveryLevel", "2", false, "0", nil},
		{"DataPDUInOrder", "No", false, "Yes", nil},
		{"IFMarker", "Yes", false, "No", nil},
		{"OFMarkInt", "2048~8192", false, Reject, nil},
		{"X-com.example.foo", "bar", false, NotUnderstood, nil},
		{"InitialR2T", "No", true, Irrelevant, nil},
		{"InitiatorName", "iqn.x", false, "", nil},
	}
	for _, tt := range tests {
		p := DefaultParams()
		out := Negotiate([]KV{{tt.key, tt.value}}, &p, lim, tt.discovery)
		got := ""
		if len(out) > 0 {
			got = out[0].Value
		}
		if got != tt.want {
			t.Errorf("%s=%s: got answer %q, want %q", tt.key, tt.value, got, tt.want)
		}
		if tt.check != nil && !tt.check(p) {
			t.Errorf("%s=%s: got params %v", tt.key, tt.value, p)
		}
	}
	p := DefaultParams()
	out := Negotiate([]KV{{"MaxBurstLength", "4096"}, {"FirstBurstLength", "65536"}}, &p, lim, false)
	if p.FirstBurstLength != 4096 || out[1].Value != "4096" {
		t.Errorf("FirstBurstLength above MaxBurstLength: got %d (%v), want 4096", p.FirstBurstLength, out)
	}
}

func TestCHAP(t *testing.T) {
	id, ch, err := NewChallenge()
	if err != nil {
		t.Fatal(err)
	}
	resp := CHAPResponse(id, "secretsecret", ch)
	enc := EncodeBinary(resp)
	dec, err := DecodeBinary(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !CHAPVerify(id, "secretsecret", ch, dec) {
		t.Error("got verify false for the right secret, want true")
	}
	if CHAPVerify(id, "secretsecreX", ch, dec) {
		t.Error("got verify true for a wrong secret, want false")
	}
	if b, err := DecodeBinary("0bAAEC"); err != nil || !bytes.Equal(b, []byte{0, 1, 2}) {
		t.Errorf("base64: got %x %v", b, err)
	}
	if _, err := DecodeBinary("zz"); err == nil {
		t.Error("got nil error for a value without 0x/0b")
	}
}
