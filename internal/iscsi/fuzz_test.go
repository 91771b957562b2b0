package iscsi

import (
	"bytes"
	"testing"
)

func FuzzReadPDU(f *testing.F) {
	var p PDU
	p.BHS[0] = byte(OpText)
	p.Data = []byte("SendTargets=All\x00")
	var buf bytes.Buffer
	_ = WritePDU(&buf, &p, Digests{Header: true, Data: true})
	f.Add(buf.Bytes(), true, true)
	f.Add(make([]byte, 48), false, false)
	f.Fuzz(func(t *testing.T, b []byte, hd, dd bool) {
		var q PDU
		d := Digests{Header: hd, Data: dd}
		if err := ReadPDU(bytes.NewReader(b), &q, d, 1<<16); err != nil {
			return
		}
		var out bytes.Buffer
		if err := WritePDU(&out, &q, d); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var r PDU
		if err := ReadPDU(&out, &r, d, 1<<16); err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if r.BHS != q.BHS || !bytes.Equal(r.Data, q.Data) {
			t.Fatal("got a different PDU after a round trip")
		}
	})
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte("InitiatorName=iqn.x\x00SessionType=Discovery\x00"))
	f.Add([]byte("=\x00\x00a"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kvs, err := ParseText(b)
		if err != nil {
			return
		}
		again, err := ParseText(AppendText(nil, kvs))
		if err != nil || len(again) != len(kvs) {
			t.Fatalf("re-parse: got %v %v, want %v", again, err, kvs)
		}
	})
}
