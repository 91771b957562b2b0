package scsi

import (
	"encoding/binary"
	"slices"
	"strings"
)

// Persistent reservation types (SPC-4 table 6.x).
const (
	prWriteExclusive     = 1
	prExclusiveAccess    = 3
	prWriteExclusiveRO   = 5
	prExclusiveAccessRO  = 6
	prWriteExclusiveAR   = 7
	prExclusiveAccessAR  = 8
	ascInvalidPRRelease  = 0x2604
	prOutParamLenMinimum = 24
)

func validPRType(t byte) bool {
	switch t {
	case prWriteExclusive, prExclusiveAccess, prWriteExclusiveRO, prExclusiveAccessRO, prWriteExclusiveAR, prExclusiveAccessAR:
		return true
	}
	return false
}

func allRegistrants(t byte) bool { return t == prWriteExclusiveAR || t == prExclusiveAccessAR }

// prIdent identifies an I_T nexus for persistent reservations. An empty ISIDPort or
// TargetPort matches every initiator port of Initiator or every target port.
type prIdent struct {
	Initiator  string `json:"initiator"`
	ISIDPort   string `json:"initiator_port,omitempty"`
	TargetPort string `json:"target_port,omitempty"`
	RelPort    uint16 `json:"relative_port,omitempty"`
}

// identOf returns the exact identity of nexus n.
func identOf(n *Nexus) prIdent {
	name := n.InitiatorName
	if name == "" {
		name, _, _ = strings.Cut(n.InitiatorPort, ",")
	}
	return prIdent{Initiator: strings.ToLower(name), ISIDPort: strings.ToLower(n.InitiatorPort), TargetPort: n.Port.Name, RelPort: n.Port.RelativeID}
}

// covers reports whether registration identity r applies to nexus identity x.
func (r prIdent) covers(x prIdent) bool {
	return r.Initiator == x.Initiator && (r.ISIDPort == "" || r.ISIDPort == x.ISIDPort) &&
		(r.TargetPort == "" || r.TargetPort == x.TargetPort)
}

// prReg is one registration.
type prReg struct {
	Key uint64  `json:"key"`
	Who prIdent `json:"nexus"`
}

// prResv is the persistent reservation.
type prResv struct {
	Type byte `json:"type"`
	// Holder is the holding nexus (unused for all-registrants types).
	Holder prIdent `json:"holder"`
	Key    uint64  `json:"key"`
}

// prState is the persistent reservation state of a logical unit.
type prState struct {
	Generation uint32  `json:"generation"`
	Regs       []prReg `json:"registrations"`
	Resv       *prResv `json:"reservation,omitempty"`
	APTPL      bool    `json:"aptpl"`
}

func (s *prState) active() bool { return len(s.Regs) > 0 || s.Resv != nil }

// find returns the index of the registration covering x, or -1.
func (s *prState) find(x prIdent) int {
	for i, r := range s.Regs {
		if r.Who.covers(x) {
			return i
		}
	}
	return -1
}

// holds reports whether x is a reservation holder.
func (s *prState) holds(x prIdent) bool {
	if s.Resv == nil {
		return false
	}
	if allRegistrants(s.Resv.Type) {
		return s.find(x) >= 0
	}
	return s.Resv.Holder.covers(x) && s.find(x) >= 0
}

// Command classes for reservation conflicts.
type conflictClass uint8

const (
	classAlways  conflictClass = iota // INQUIRY, REPORT LUNS, REQUEST SENSE, RSOC, RTPG
	classAllowed                      // allowed under PR (TUR, READ CAPACITY, ...)
	classRead
	classWrite
	classReserve // RESERVE/RELEASE(6/10)
	classPR      // PERSISTENT RESERVE IN/OUT
)

// conflicts reports whether a command of class cl from t's nexus conflicts with a
// reservation. Only called when lu.reserved is set.
func (lu *LogicalUnit) conflicts(t *task, cl conflictClass) bool {
	if cl == classAlways {
		return false
	}
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if lu.resv6 != "" {
		if lu.resv6 == t.ns.id {
			return false
		}
		op := t.cdb[0]
		return op != opRelease6 && op != opRelease10
	}
	s := &lu.pr
	switch cl {
	case classReserve:
		op := t.cdb[0]
		return s.active() && op != opRelease6 && op != opRelease10
	case classPR, classAllowed:
		return false
	}
	if s.Resv == nil || s.holds(t.ns.who) {
		return false
	}
	registered := s.find(t.ns.who) >= 0
	switch s.Resv.Type {
	case prWriteExclusive:
		return cl == classWrite
	case prExclusiveAccess:
		return true
	case prWriteExclusiveRO, prWriteExclusiveAR:
		return cl == classWrite && !registered
	default: // EA-RO, EA-AR
		return !registered
	}
}

func opReserve(t *task) *checkCond {
	lu := t.lu
	cdb := cdbOf(t)
	if len(cdb) == 10 && cdb[1]&0x02 != 0 {
		return invalidCDB(1, 1) // third-party reservation
	}
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if lu.pr.active() {
		return errConflict
	}
	if lu.resv6 != "" && lu.resv6 != t.ns.id {
		return errConflict
	}
	lu.resv6 = t.ns.id
	lu.reserved.Store(true)
	return nil
}

func opRelease(t *task) *checkCond {
	lu := t.lu
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if lu.resv6 == t.ns.id {
		lu.resv6 = ""
		lu.reserved.Store(lu.pr.active())
	}
	return nil
}

func opPRInFn(t *task) *checkCond {
	lu := t.lu
	cdb := t.cdb[:10]
	alloc := int(binary.BigEndian.Uint16(cdb[7:]))
	lu.mu.Lock()
	defer lu.mu.Unlock()
	d, c := lu.pr.in(cdb[1] & 0x1f)
	if c != nil {
		return c
	}
	t.data = d[:min(len(d), alloc)]
	return nil
}

// in builds PERSISTENT RESERVE IN data for service action sa.
func (s *prState) in(sa byte) ([]byte, *checkCond) {
	d := make([]byte, 8)
	binary.BigEndian.PutUint32(d, s.Generation)
	switch sa {
	case 0: // READ KEYS
		for _, r := range s.Regs {
			d = binary.BigEndian.AppendUint64(d, r.Key)
		}
	case 1: // READ RESERVATION
		if s.Resv != nil {
			var r [16]byte
			if !allRegistrants(s.Resv.Type) {
				binary.BigEndian.PutUint64(r[:], s.Resv.Key)
			}
			r[13] = s.Resv.Type
			d = append(d, r[:]...)
		}
	case 2: // REPORT CAPABILITIES
		d = make([]byte, 8)
		d[1] = 8
		d[2] = 0x10 | 0x08 | 0x04 | 0x01 // CRH, SIP_C, ATP_C, PTPL_C
		d[3] = 0x80                      // TMV
		if s.APTPL {
			d[3] |= 0x01
		}
		d[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02
		d[5] = 0x01
		return d, nil
	case 3: // READ FULL STATUS
		for _, r := range s.Regs {
			var e [24]byte
			binary.BigEndian.PutUint64(e[:], r.Key)
			if r.Who.TargetPort == "" {
				e[12] |= 0x02
			}
			if s.holds(r.Who) {
				e[12] |= 0x01
				e[13] = s.Resv.Type
			}
			binary.BigEndian.PutUint16(e[18:], r.Who.RelPort)
			tid := encodeTransportID(r.Who)
			binary.BigEndian.PutUint32(e[20:], uint32(len(tid)))
			d = append(append(d, e[:]...), tid...)
		}
	default:
		return nil, invalidCDB(1, 4)
	}
	binary.BigEndian.PutUint32(d[4:], uint32(len(d)-8))
	return d, nil
}

// encodeTransportID returns an iSCSI TransportID (format 0 or 1) for x.
func encodeTransportID(x prIdent) []byte {
	name := x.Initiator
	format := byte(0)
	if x.ISIDPort != "" {
		name, format = x.ISIDPort, 0x40
	}
	b := []byte(name)
	b = append(b, 0)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	d := []byte{format | 0x05, 0, 0, 0}
	binary.BigEndian.PutUint16(d[2:], uint16(len(b)))
	return append(d, b...)
}

// decodeTransportID decodes one iSCSI TransportID from d, returning it and its length.
func decodeTransportID(d []byte) (prIdent, int, bool) {
	if len(d) < 4 || d[0]&0x0f != 0x05 {
		return prIdent{}, 0, false
	}
	n := int(binary.BigEndian.Uint16(d[2:]))
	if n < 4 || 4+n > len(d) {
		return prIdent{}, 0, false
	}
	s := string(d[4 : 4+n])
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	s = strings.ToLower(s)
	switch d[0] >> 6 {
	case 0:
		if s == "" || strings.Contains(s, ",i,") {
			return prIdent{}, 0, false
		}
		return prIdent{Initiator: s}, 4 + n, true
	case 1:
		name, isid, ok := strings.Cut(s, ",i,")
		if !ok || name == "" || isid == "" {
			return prIdent{}, 0, false
		}
		return prIdent{Initiator: name, ISIDPort: s}, 4 + n, true
	}
	return prIdent{}, 0, false
}

// removeRegs removes registrations for which drop is true and returns their idents.
func (s *prState) removeRegs(drop func(prReg) bool) []prIdent {
	var gone []prIdent
	s.Regs = slices.DeleteFunc(s.Regs, func(r prReg) bool {
		if drop(r) {
			gone = append(gone, r.Who)
			return true
		}
		return false
	})
	return gone
}
