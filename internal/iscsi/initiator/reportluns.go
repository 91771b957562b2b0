package initiator

import (
	"context"
	"encoding/binary"
	"fmt"
)

// maxReportLUNs bounds the REPORT LUNS answer asked for (8 bytes a LUN).
const maxReportLUNs = 8 + 8*1024

// ReportLUNs asks a target which LUNs it offers (REPORT LUNS to LUN 0).
func ReportLUNs(ctx context.Context, c Commander) ([]uint64, error) {
	buf := make([]byte, maxReportLUNs)
	cdb := make([]byte, 12)
	cdb[0] = 0xa0
	binary.BigEndian.PutUint32(cdb[6:], uint32(len(buf)))
	r, err := Command(ctx, c, 0, cdb, nil, buf)
	if err != nil {
		return nil, fmt.Errorf("report luns: %w", err)
	}
	return ParseReportLUNs(buf[:r.DataIn])
}

// ParseReportLUNs decodes REPORT LUNS parameter data (SPC-4 6.33) into LUN numbers:
// peripheral and flat space addressing (SAM-5 single level); other addressing
// methods are refused. A list cut short by the allocation length yields the entries
// it holds.
func ParseReportLUNs(b []byte) ([]uint64, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("report luns: %d bytes, want at least 8", len(b))
	}
	n := int(binary.BigEndian.Uint32(b))
	if n%8 != 0 {
		return nil, fmt.Errorf("report luns: list length %d is not a multiple of 8", n)
	}
	end := min(len(b), 8+n)
	var out []uint64
	for off := 8; off+8 <= end; off += 8 {
		e := b[off : off+8]
		var lun uint64
		switch e[0] >> 6 {
		case 0: // peripheral device addressing: bus 0 only
			if e[0]&0x3f != 0 {
				return nil, fmt.Errorf("report luns: LUN entry %x: bus %d is not supported", e, e[0]&0x3f)
			}
			lun = uint64(e[1])
		case 1: // flat space addressing
			lun = uint64(e[0]&0x3f)<<8 | uint64(e[1])
		default:
			return nil, fmt.Errorf("report luns: LUN entry %x: addressing method %d is not supported", e, e[0]>>6)
		}
		if binary.BigEndian.Uint16(e[2:])|binary.BigEndian.Uint16(e[4:])|binary.BigEndian.Uint16(e[6:]) != 0 {
			return nil, fmt.Errorf("report luns: LUN entry %x: multi-level LUNs are not supported", e)
		}
		out = append(out, lun)
	}
	return out, nil
}
