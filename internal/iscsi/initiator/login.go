package initiator

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"strconv"

	"github.com/rampart-storage/rampart/internal/iscsi"
)

// Login stages (CSG/NSG).
const (
	stageSecurity    = 0
	stageOperational = 1
	stageFullFeature = 3
)

// What this initiator offers in operational negotiation.
const (
	ourMaxRecvDataSegment = 256 << 10
	ourMaxBurst           = 16 << 20
	ourFirstBurst         = 256 << 10
)

// loginConn runs the login phase over one connection.
type loginConn struct {
	o      *Options
	br     *bufio.Reader
	bw     *bufio.Writer
	isid   [6]byte
	tsih   uint16
	itt    uint32
	cmdSN  uint32
	expSN  uint32 // ExpStatSN
	params iscsi.Params
	resp   iscsi.PDU
	// the target's sequence numbers after the last response
	expCmdSN, maxCmdSN uint32
}

func newISID() [6]byte {
	var b [6]byte
	rand.Read(b[:])
	b[0] = 0x80 | b[0]&0x3f // type 2: random
	return b
}

// exchange sends one login request and reads the (possibly continued) response.
func (l *loginConn) exchange(csg, nsg byte, transit bool, kvs []iscsi.KV) ([]iscsi.KV, error) {
	var p iscsi.PDU
	p.BHS[0] = byte(iscsi.OpLogin) | iscsi.ImmediateBit
	p.BHS[1] = csg<<2 | nsg
	if transit {
		p.BHS[1] |= iscsi.FlagTransit
	}
	copy(p.BHS[8:14], l.isid[:])
	p.SetU16(14, l.tsih)
	p.SetU32(16, l.itt)
	p.SetU32(24, l.cmdSN)
	p.SetU32(28, l.expSN)
	p.Data = iscsi.AppendText(nil, kvs)
	if err := iscsi.WritePDU(l.bw, &p, iscsi.Digests{}); err != nil {
		return nil, err
	}
	if err := l.bw.Flush(); err != nil {
		return nil, err
	}
	var text []byte
	for {
		if err := iscsi.ReadPDU(l.br, &l.resp, iscsi.Digests{}, iscsi.MaxTextLen); err != nil {
			return nil, fmt.Errorf("login response: %w", err)
		}
		r := &l.resp
		if r.Opcode() != iscsi.OpLoginResp {
			return nil, fmt.Errorf("login: got %s PDU, want Login Response", r.Opcode())
		}
		if class, detail := r.BHS[36], r.BHS[37]; class != 0 {
			return nil, &LoginError{Class: class, Detail: detail}
		}
		l.tsih = r.U16(14)
		l.expSN = r.U32(24) + 1
		l.expCmdSN, l.maxCmdSN = r.U32(28), r.U32(32)
		text = append(text, r.Data...)
		if r.Flags()&iscsi.FlagContinue == 0 {
			break
		}
		// Ask for the rest of a continued response with an empty request.
		var q iscsi.PDU
		q.BHS = p.BHS
		q.BHS[1] &^= iscsi.FlagTransit
		q.SetU32(28, l.expSN)
		if err := iscsi.WritePDU(l.bw, &q, iscsi.Digests{}); err != nil {
			return nil, err
		}
		if err := l.bw.Flush(); err != nil {
			return nil, err
		}
	}
	return iscsi.ParseText(text)
}

func (l *loginConn) transitTo() (bool, byte) {
	f := l.resp.Flags()
	return f&iscsi.FlagTransit != 0, f & 3
}

// login runs the security stage (CHAP or none) and the operational stage.
func (l *loginConn) login() error {
	o := l.o
	l.params = iscsi.DefaultParams()
	first := []iscsi.KV{{Key: "InitiatorName", Value: o.InitiatorName}}
	if o.TargetName == "" {
		first = append(first, iscsi.KV{Key: "SessionType", Value: "Discovery"})
	} else {
		first = append(first, iscsi.KV{Key: "SessionType", Value: "Normal"}, iscsi.KV{Key: "TargetName", Value: o.TargetName})
	}
	if o.CHAP == nil {
		first = append(first, iscsi.KV{Key: "AuthMethod", Value: "None"})
		if _, err := l.exchange(stageSecurity, stageOperational, true, first); err != nil {
			return err
		}
		if t, nsg := l.transitTo(); !t || nsg != stageOperational {
			return fmt.Errorf("login: target did not leave the security stage without authentication (it may require CHAP)")
		}
	} else if err := l.chap(first); err != nil {
		return err
	}
	return l.operational()
}

func (l *loginConn) chap(first []iscsi.KV) error {
	o := l.o
	kvs, err := l.exchange(stageSecurity, stageOperational, false, append(first, iscsi.KV{Key: "AuthMethod", Value: "CHAP,None"}))
	if err != nil {
		return err
	}
	if m, _ := iscsi.Get(kvs, "AuthMethod"); m != "CHAP" {
		return fmt.Errorf("login: target chose AuthMethod=%q, want CHAP", m)
	}
	kvs, err = l.exchange(stageSecurity, stageOperational, false, []iscsi.KV{{Key: "CHAP_A", Value: iscsi.CHAPAlgorithmMD5}})
	if err != nil {
		return err
	}
	a, _ := iscsi.Get(kvs, "CHAP_A")
	is, _ := iscsi.Get(kvs, "CHAP_I")
	cs, _ := iscsi.Get(kvs, "CHAP_C")
	id, err := strconv.ParseUint(is, 10, 8)
	if a != iscsi.CHAPAlgorithmMD5 || err != nil {
		return fmt.Errorf("login: CHAP_A=%q CHAP_I=%q: want MD5 and an identifier", a, is)
	}
	challenge, err := iscsi.DecodeBinary(cs)
	if err != nil {
		return fmt.Errorf("login: CHAP_C: %w", err)
	}
	answer := []iscsi.KV{
		{Key: "CHAP_N", Value: o.CHAP.User},
		{Key: "CHAP_R", Value: iscsi.EncodeBinary(iscsi.CHAPResponse(byte(id), o.CHAP.Secret, challenge))},
	}
	var mid byte
	var mchal []byte
	if o.MutualCHAP != nil {
		if mid, mchal, err = iscsi.NewChallenge(); err != nil {
			return err
		}
		answer = append(answer, iscsi.KV{Key: "CHAP_I", Value: strconv.Itoa(int(mid))}, iscsi.KV{Key: "CHAP_C", Value: iscsi.EncodeBinary(mchal)})
	}
	kvs, err = l.exchange(stageSecurity, stageOperational, true, answer)
	if err != nil {
		return err
	}
	if o.MutualCHAP != nil {
		n, _ := iscsi.Get(kvs, "CHAP_N")
		r, _ := iscsi.Get(kvs, "CHAP_R")
		resp, err := iscsi.DecodeBinary(r)
		if err != nil || n != o.MutualCHAP.User || !iscsi.CHAPVerify(mid, o.MutualCHAP.Secret, mchal, resp) {
			return fmt.Errorf("login: the target's mutual CHAP answer (name %q) is wrong: %w", n, iscsi.ErrCHAP)
		}
	}
	if t, nsg := l.transitTo(); !t || nsg != stageOperational {
		return fmt.Errorf("login: target did not leave the security stage after CHAP")
	}
	return nil
}

func (l *loginConn) operational() error {
	o := l.o
	digest := func(on bool) string {
		if on {
			return "CRC32C,None"
		}
		return "None"
	}
	offer := []iscsi.KV{
		{Key: "HeaderDigest", Value: digest(o.HeaderDigest)},
		{Key: "DataDigest", Value: digest(o.DataDigest)},
		{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(ourMaxRecvDataSegment)},
	}
	if o.TargetName != "" {
		offer = append(offer,
			iscsi.KV{Key: "InitialR2T", Value: "No"},
			iscsi.KV{Key: "ImmediateData", Value: "Yes"},
			iscsi.KV{Key: "MaxBurstLength", Value: strconv.Itoa(ourMaxBurst)},
			iscsi.KV{Key: "FirstBurstLength", Value: strconv.Itoa(ourFirstBurst)},
			iscsi.KV{Key: "MaxOutstandingR2T", Value: "1"},
			iscsi.KV{Key: "MaxConnections", Value: "1"},
			iscsi.KV{Key: "DefaultTime2Wait", Value: "0"},
			iscsi.KV{Key: "DefaultTime2Retain", Value: "0"},
			iscsi.KV{Key: "ErrorRecoveryLevel", Value: "0"},
			iscsi.KV{Key: "DataPDUInOrder", Value: "Yes"},
			iscsi.KV{Key: "DataSequenceInOrder", Value: "Yes"},
		)
	}
	l.params.OurMaxRecvDataSegmentLength = ourMaxRecvDataSegment
	sent := map[string]bool{}
	for _, kv := range offer {
		sent[kv.Key] = true
	}
	for round := 0; ; round++ {
		if round > 8 {
			return fmt.Errorf("login: operational negotiation did not finish in %d rounds", round)
		}
		kvs, err := l.exchange(stageOperational, stageFullFeature, true, offer)
		if err != nil {
			return err
		}
		offer = nil
		for _, kv := range kvs {
			l.apply(kv)
			if !sent[kv.Key] && kv.Key != "TargetAlias" && kv.Key != "TargetPortalGroupTag" && kv.Key != "TargetAddress" {
				// The target proposed a key: accept its value (all we accept is in range).
				offer = append(offer, kv)
				sent[kv.Key] = true
			}
		}
		if t, nsg := l.transitTo(); t && nsg == stageFullFeature {
			return nil
		}
	}
}

// apply records one negotiated result.
func (l *loginConn) apply(kv iscsi.KV) {
	p := &l.params
	num := func() uint32 { n, _ := strconv.ParseUint(kv.Value, 10, 32); return uint32(n) }
	switch kv.Key {
	case "HeaderDigest":
		p.HeaderDigest = kv.Value == "CRC32C"
	case "DataDigest":
		p.DataDigest = kv.Value == "CRC32C"
	case "MaxRecvDataSegmentLength":
		if n := num(); n >= 512 {
			p.MaxRecvDataSegmentLength = n
		}
	case "InitialR2T":
		p.InitialR2T = kv.Value == "Yes"
	case "ImmediateData":
		p.ImmediateData = kv.Value == "Yes"
	case "MaxBurstLength":
		if n := num(); n >= 512 {
			p.MaxBurstLength = n
		}
	case "FirstBurstLength":
		if n := num(); n >= 512 {
			p.FirstBurstLength = n
		}
	case "MaxOutstandingR2T":
		if n := num(); n >= 1 {
			p.MaxOutstandingR2T = n
		}
	case "ErrorRecoveryLevel":
		p.ErrorRecoveryLevel = num()
	}
}
