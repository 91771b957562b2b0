package iscsi

import (
	"fmt"
	"strconv"
)

// Params are a connection's and session's operational parameters after negotiation.
type Params struct {
	HeaderDigest bool
	DataDigest   bool
	// MaxRecvDataSegmentLength is what the peer declared it receives: the limit of
	// the data segments this side sends.
	MaxRecvDataSegmentLength uint32
	// OurMaxRecvDataSegmentLength is what this side declared it receives.
	OurMaxRecvDataSegmentLength uint32
	MaxConnections              uint32
	InitialR2T                  bool
	ImmediateData               bool
	MaxBurstLength              uint32
	FirstBurstLength            uint32
	DefaultTime2Wait            uint32
	DefaultTime2Retain          uint32
	MaxOutstandingR2T           uint32
	DataPDUInOrder              bool
	DataSequenceInOrder         bool
	ErrorRecoveryLevel          uint32
}

// DefaultParams are the RFC 7143 defaults, before any negotiation.
func DefaultParams() Params {
	return Params{
		MaxRecvDataSegmentLength:    8192,
		OurMaxRecvDataSegmentLength: 8192,
		MaxConnections:              1,
		InitialR2T:                  true,
		ImmediateData:               true,
		MaxBurstLength:              262144,
		FirstBurstLength:            65536,
		DefaultTime2Wait:            2,
		DefaultTime2Retain:          20,
		MaxOutstandingR2T:           1,
		DataPDUInOrder:              true,
		DataSequenceInOrder:         true,
	}
}

// Limits are what a side is willing to accept; the responder negotiates within them.
type Limits struct {
	MaxRecvDataSegmentLength uint32 // declared for this side
	MaxConnections           uint32
	InitialR2T               bool // true: this side wants InitialR2T=Yes
	ImmediateData            bool
	MaxBurstLength           uint32
	FirstBurstLength         uint32
	MaxOutstandingR2T        uint32
	DefaultTime2Wait         uint32
	DefaultTime2Retain       uint32
	ErrorRecoveryLevel       uint32
	// DataPDUInOrder/DataSequenceInOrder: this side always requires in-order data.
}

// DefaultTargetLimits are rampart's target limits.
func DefaultTargetLimits() Limits {
	return Limits{
		MaxRecvDataSegmentLength: 262144,
		MaxConnections:           1,
		InitialR2T:               false,
		ImmediateData:            true,
		MaxBurstLength:           16776192,
		FirstBurstLength:         262144,
		MaxOutstandingR2T:        16,
		DefaultTime2Wait:         2,
		DefaultTime2Retain:       0,
		ErrorRecoveryLevel:       0,
	}
}

// NumericRange gives the legal range of numeric keys.
var numericRange = map[string][2]uint64{
	"MaxRecvDataSegmentLength": {512, 1<<24 - 1},
	"MaxBurstLength":           {512, 1<<24 - 1},
	"FirstBurstLength":         {512, 1<<24 - 1},
	"MaxConnections":           {1, 65535},
	"DefaultTime2Wait":         {0, 3600},
	"DefaultTime2Retain":       {0, 3600},
	"MaxOutstandingR2T":        {1, 65535},
	"ErrorRecoveryLevel":       {0, 2},
}

// declarative keys the responder takes note of without answering.
var declarative = map[string]bool{
	"InitiatorName": true, "InitiatorAlias": true, "TargetName": true, "TargetAlias": true,
	"SessionType": true, "TargetAddress": true, "TargetPortalGroupTag": true,
}

// Negotiate answers the operational keys of an initiator's login request, updating p.
// discovery restricts a SessionType=Discovery session to the keys that apply to it.
// Security and declarative keys (names, SessionType, AuthMethod, CHAP_*) are skipped;
// the caller handles them. Unknown keys are answered NotUnderstood, bad values Reject.
func Negotiate(kvs []KV, p *Params, lim Limits, discovery bool) []KV {
	var out []KV
	answer := func(k, v string) { out = append(out, KV{k, v}) }
	for _, kv := range kvs {
		k, v := kv.Key, kv.Value
		if declarative[k] || k == "AuthMethod" || len(k) > 5 && k[:5] == "CHAP_" {
			continue
		}
		switch k {
		case "HeaderDigest", "DataDigest":
			sel := ""
			for _, opt := range SplitList(v) {
				if opt == "None" || opt == "CRC32C" {
					sel = opt
					break
				}
			}
			if sel == "" {
				answer(k, Reject)
				continue
			}
			if k == "HeaderDigest" {
				p.HeaderDigest = sel == "CRC32C"
			} else {
				p.DataDigest = sel == "CRC32C"
			}
			answer(k, sel)
		case "InitialR2T", "ImmediateData", "DataPDUInOrder", "DataSequenceInOrder", "IFMarker", "OFMarker":
			b, ok := parseBool(v)
			if !ok {
				answer(k, Reject)
				continue
			}
			if discovery && k != "IFMarker" && k != "OFMarker" {
				answer(k, Irrelevant)
				continue
			}
			switch k {
			case "InitialR2T": // OR
				p.InitialR2T = b || lim.InitialR2T
				answer(k, yesNo(p.InitialR2T))
			case "ImmediateData": // AND
				p.ImmediateData = b && lim.ImmediateData
				answer(k, yesNo(p.ImmediateData))
			case "DataPDUInOrder": // OR; we only do in-order
				p.DataPDUInOrder = true
				answer(k, "Yes")
			case "DataSequenceInOrder":
				p.DataSequenceInOrder = true
				answer(k, "Yes")
			default: // markers are not supported (AND with No)
				answer(k, "No")
			}
		case "OFMarkInt", "IFMarkInt":
			answer(k, Reject)
		case "MaxRecvDataSegmentLength", "MaxBurstLength", "FirstBurstLength", "MaxConnections",
			"DefaultTime2Wait", "DefaultTime2Retain", "MaxOutstandingR2T", "ErrorRecoveryLevel":
			n, err := strconv.ParseUint(v, 10, 32)
			r := numericRange[k]
			if err != nil || n < r[0] || n > r[1] {
				answer(k, Reject)
				continue
			}
			u := uint32(n)
			if discovery && k != "MaxRecvDataSegmentLength" && k != "DefaultTime2Wait" &&
				k != "DefaultTime2Retain" && k != "ErrorRecoveryLevel" {
				answer(k, Irrelevant)
				continue
			}
			switch k {
			case "MaxRecvDataSegmentLength": // declarative: the initiator receives this much
				p.MaxRecvDataSegmentLength = u
			case "MaxBurstLength":
				p.MaxBurstLength = min(u, lim.MaxBurstLength)
				answer(k, utoa(p.MaxBurstLength))
			case "FirstBurstLength":
				p.FirstBurstLength = min(u, lim.FirstBurstLength)
				answer(k, utoa(p.FirstBurstLength))
			case "MaxConnections":
				p.MaxConnections = min(u, lim.MaxConnections)
				answer(k, utoa(p.MaxConnections))
			case "DefaultTime2Wait":
				p.DefaultTime2Wait = max(u, lim.DefaultTime2Wait)
				answer(k, utoa(p.DefaultTime2Wait))
			case "DefaultTime2Retain":
				p.DefaultTime2Retain = min(u, lim.DefaultTime2Retain)
				answer(k, utoa(p.DefaultTime2Retain))
			case "MaxOutstandingR2T":
				p.MaxOutstandingR2T = min(u, lim.MaxOutstandingR2T)
				answer(k, utoa(p.MaxOutstandingR2T))
			case "ErrorRecoveryLevel":
				p.ErrorRecoveryLevel = min(u, lim.ErrorRecoveryLevel)
				answer(k, utoa(p.ErrorRecoveryLevel))
			}
		default:
			answer(k, NotUnderstood)
		}
	}
	if p.FirstBurstLength > p.MaxBurstLength {
		p.FirstBurstLength = p.MaxBurstLength
		for i := range out {
			if out[i].Key == "FirstBurstLength" {
				out[i].Value = utoa(p.FirstBurstLength)
			}
		}
	}
	return out
}

func parseBool(v string) (bool, bool) {
	switch v {
	case "Yes":
		return true, true
	case "No":
		return false, true
	}
	return false, false
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

func utoa(u uint32) string { return strconv.FormatUint(uint64(u), 10) }

// String summarises p for logs.
func (p Params) String() string {
	return fmt.Sprintf("hd=%v dd=%v mrdsl=%d/%d ir2t=%v imm=%v mbl=%d fbl=%d r2t=%d erl=%d",
		p.HeaderDigest, p.DataDigest, p.MaxRecvDataSegmentLength, p.OurMaxRecvDataSegmentLength,
		p.InitialR2T, p.ImmediateData, p.MaxBurstLength, p.FirstBurstLength, p.MaxOutstandingR2T,
		p.ErrorRecoveryLevel)
}
