package initiator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// ALUAState is a target port group's asymmetric access state (SPC-4 6.37).
type ALUAState byte

// Asymmetric access states.
const (
	ALUAActiveOptimized    ALUAState = 0x0
	ALUAActiveNonOptimized ALUAState = 0x1
	ALUAStandby            ALUAState = 0x2
	ALUAUnavailable        ALUAState = 0x3
	ALUALBADependent       ALUAState = 0x4
	ALUAOffline            ALUAState = 0xe
	ALUATransitioning      ALUAState = 0xf
)

func (s ALUAState) String() string {
	switch s {
	case ALUAActiveOptimized:
		return "active/optimized"
	case ALUAActiveNonOptimized:
		return "active/non-optimized"
	case ALUAStandby:
		return "standby"
	case ALUAUnavailable:
		return "unavailable"
	case ALUALBADependent:
		return "lba-dependent"
	case ALUAOffline:
		return "offline"
	case ALUATransitioning:
		return "transitioning"
	}
	return fmt.Sprintf("reserved(%#x)", byte(s))
}

// Active reports whether commands may be sent to a port in this state.
func (s ALUAState) Active() bool {
	return s == ALUAActiveOptimized || s == ALUAActiveNonOptimized || s == ALUALBADependent
}

// Prio is the path priority of a port in this state, as multipath-tools' alua
// prioritizer gives it: 50 optimized, 10 non-optimized, 1 standby, 0 otherwise.
func (s ALUAState) Prio() int {
	switch s {
	case ALUAActiveOptimized:
		return 50
	case ALUAActiveNonOptimized:
		return 10
	case ALUAStandby:
		return 1
	}
	return 0
}

// TargetPortGroup is one descriptor of REPORT TARGET PORT GROUPS.
type TargetPortGroup struct {
	ID        uint16
	State     ALUAState
	Preferred bool
	Ports     []uint16 // relative target port identifiers
}

// ErrNoALUA is returned when the logical unit does not support asymmetric access.
var ErrNoALUA = errors.New("initiator: logical unit does not report target port groups (TPGS=0)")

// maxRTPG bounds the REPORT TARGET PORT GROUPS answer we ask for.
const maxRTPG = 4096

// ReportTargetPortGroups sends REPORT TARGET PORT GROUPS (MAINTENANCE IN, service
// action 0x0A, length-only header format) and decodes the answer.
func ReportTargetPortGroups(ctx context.Context, c Commander, lun uint64) ([]TargetPortGroup, error) {
	buf := make([]byte, maxRTPG)
	cdb := []byte{0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(cdb[6:], uint32(len(buf)))
	r, err := Command(ctx, c, lun, cdb, nil, buf)
	if err != nil {
		return nil, fmt.Errorf("LUN %d: report target port groups: %w", lun, err)
	}
	return ParseTargetPortGroups(buf[:r.DataIn])
}

// ParseTargetPortGroups decodes REPORT TARGET PORT GROUPS parameter data in either
// header format (SPC-4 6.37: a 4-byte length, or format 1 with an 8-byte header). A
// truncated answer yields the complete descriptors it holds.
func ParseTargetPortGroups(b []byte) ([]TargetPortGroup, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("report target port groups: %d bytes, want at least 4", len(b))
	}
	n := int(binary.BigEndian.Uint32(b))
	hdr := 4
	if len(b) >= 8 && b[4]&0x70 == 0x10 { // format 1: extended header
		hdr = 8
	}
	end := min(len(b), 4+n)
	if n > 1<<20 {
		return nil, fmt.Errorf("report target port groups: length %d is not plausible", n)
	}
	var out []TargetPortGroup
	for off := hdr; off+8 <= end; {
		d := b[off:]
		ports := int(d[7])
		if off+8+4*ports > end {
			break // truncated by the allocation length
		}
		g := TargetPortGroup{ID: binary.BigEndian.Uint16(d[2:]), State: ALUAState(d[0] & 0x0f), Preferred: d[0]&0x80 != 0}
		for i := range ports {
			g.Ports = append(g.Ports, binary.BigEndian.Uint16(d[8+4*i+2:]))
		}
		out = append(out, g)
		off += 8 + 4*ports
	}
	return out, nil
}

// PortIdentity is the target port a path reaches, from VPD page 0x83.
type PortIdentity struct {
	RelativePort uint16 // 0 when not reported
	Group        uint16
	HasGroup     bool
}

// ParsePortIdentity finds the relative target port (designator type 4) and target port
// group (type 5) associated with the target port in a VPD 0x83 page.
func ParsePortIdentity(page []byte) (PortIdentity, error) {
	var id PortIdentity
	if len(page) < 4 || page[1] != 0x83 {
		return id, errors.New("device identification page: bad header")
	}
	d := page[4:min(len(page), 4+int(binary.BigEndian.Uint16(page[2:])))]
	for len(d) >= 4 {
		n := int(d[3])
		if 4+n > len(d) {
			break
		}
		typ, assoc, body := d[1]&0xf, (d[1]>>4)&3, d[4:4+n]
		if assoc == 1 && len(body) >= 4 {
			switch typ {
			case 4:
				id.RelativePort = binary.BigEndian.Uint16(body[2:])
			case 5:
				id.Group, id.HasGroup = binary.BigEndian.Uint16(body[2:]), true
			}
		}
		d = d[4+n:]
	}
	return id, nil
}

// ALUAInfo is what a path learns of asymmetric access: its port, its group, the group's
// state. Supported is false for a logical unit without ALUA (TPGS=0).
type ALUAInfo struct {
	Supported bool
	// Explicit: the logical unit takes SET TARGET PORT GROUPS (INQUIRY TPGS 10b or
	// 11b), so an initiator may change the groups' states; with implicit ALUA only
	// (TPGS 01b) only the target changes them.
	Explicit  bool
	Port      PortIdentity
	State     ALUAState
	Preferred bool
}

// ProbeALUA asks a LUN through one path whether it supports ALUA (standard INQUIRY
// TPGS), which target port group the path reaches (VPD 0x83) and that group's state
// (REPORT TARGET PORT GROUPS).
func ProbeALUA(ctx context.Context, c Commander, lun uint64) (ALUAInfo, error) {
	var info ALUAInfo
	inq := make([]byte, 36)
	r, err := Command(ctx, c, lun, []byte{0x12, 0, 0, 0, 36, 0}, nil, inq)
	if err != nil {
		return info, fmt.Errorf("LUN %d: inquiry: %w", lun, err)
	}
	if r.DataIn < 6 || inq[5]&0x30 == 0 {
		return info, nil
	}
	explicit := inq[5]&0x20 != 0
	page := make([]byte, 252)
	r, err = Command(ctx, c, lun, []byte{0x12, 0x01, 0x83, 0, 252, 0}, nil, page)
	if err != nil {
		return info, fmt.Errorf("LUN %d: device identification: %w", lun, err)
	}
	if info.Port, err = ParsePortIdentity(page[:r.DataIn]); err != nil {
		return info, fmt.Errorf("LUN %d: %w", lun, err)
	}
	groups, err := ReportTargetPortGroups(ctx, c, lun)
	if err != nil {
		return info, err
	}
	for _, g := range groups {
		mine := info.Port.HasGroup && g.ID == info.Port.Group
		if !info.Port.HasGroup && info.Port.RelativePort != 0 {
			for _, p := range g.Ports {
				mine = mine || p == info.Port.RelativePort
			}
		}
		if mine {
			info.Supported, info.Explicit, info.State, info.Preferred = true, explicit, g.State, g.Preferred
			info.Port.Group, info.Port.HasGroup = g.ID, true
			return info, nil
		}
	}
	return info, fmt.Errorf("LUN %d: target port group %d (relative port %d) is not in the target's report", lun, info.Port.Group, info.Port.RelativePort)
}

// SetTargetPortGroups asks the logical unit to put target port group group in state
// (SET TARGET PORT GROUPS: MAINTENANCE OUT, service action 0x0A, SPC-4 6.35), as
// Linux's ALUA device handler does when multipath turns to a path group in standby.
// Only a logical unit with explicit ALUA (ALUAInfo.Explicit) takes it.
func SetTargetPortGroups(ctx context.Context, c Commander, lun uint64, group uint16, state ALUAState) error {
	param := make([]byte, 8) // 4 reserved bytes, then one 4-byte descriptor
	param[4] = byte(state) & 0x0f
	binary.BigEndian.PutUint16(param[6:], group)
	cdb := []byte{0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(cdb[6:], uint32(len(param)))
	if _, err := Command(ctx, c, lun, cdb, param, nil); err != nil {
		return fmt.Errorf("LUN %d: set target port group %d %s: %w", lun, group, state, err)
	}
	return nil
}

// ALUA sense codes a multipath layer reacts to.
const (
	// ASC/ASCQ 2A/06: ASYMMETRIC ACCESS STATE CHANGED (a UNIT ATTENTION).
	ascALUAChanged = 0x2a06
	// ASC/ASCQ 2A/07: IMPLICIT ASYMMETRIC ACCESS STATE TRANSITION FAILED.
	ascALUATransitionFailed = 0x2a07
)

// SenseOf decodes a result's sense data: key, ASC, ASCQ (zeros when none).
func SenseOf(r Result) (key, asc, ascq byte) {
	e := parseSense(0, r)
	return e.Key, e.ASC, e.ASCQ
}

// IsALUAChange reports whether a result is the UNIT ATTENTION that says the target's
// asymmetric access states changed.
func IsALUAChange(r Result) bool {
	if r.Status != 0x02 {
		return false
	}
	k, asc, ascq := SenseOf(r)
	code := int(asc)<<8 | int(ascq)
	return k == 0x6 && (code == ascALUAChanged || code == ascALUATransitionFailed)
}

// IsPortInactive reports whether a result is NOT READY because the target port is in
// transition, standby or unavailable (ASC 04, ASCQ 0A/0B/0C): the command did not run
// and belongs on another path.
func IsPortInactive(r Result) bool {
	if r.Status != 0x02 {
		return false
	}
	k, asc, ascq := SenseOf(r)
	return k == 0x2 && asc == 0x04 && (ascq == 0x0a || ascq == 0x0b || ascq == 0x0c)
}
