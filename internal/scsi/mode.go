package scsi

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// modeState holds the changeable mode parameters of a logical unit. Only WCE of the
// caching page is changeable: with WCE off every write is written through (FUA).
type modeState struct {
	wce    atomic.Bool
	defWCE bool
}

func (m *modeState) init(wce bool) { m.defWCE = wce; m.wce.Store(wce) }
func (m *modeState) reset()        { m.wce.Store(m.defWCE) }

// Page control values.
const (
	pcCurrent    = 0
	pcChangeable = 1
	pcDefault    = 2
	pcSaved      = 3
)

// modePage returns mode page code in page control pc.
func (lu *LogicalUnit) modePage(code byte, pc int) []byte {
	switch code {
	case 0x08:
		p := make([]byte, 20)
		p[0], p[1] = 0x08, 0x12
		switch pc {
		case pcChangeable:
			p[2] = 0x04
		case pcDefault:
			if lu.mode.defWCE {
				p[2] = 0x04
			}
		default:
			if lu.mode.wce.Load() {
				p[2] = 0x04
			}
		}
		return p
	case 0x0a:
		p := make([]byte, 12)
		p[0], p[1] = 0x0a, 0x0a
		if pc != pcChangeable {
			p[3] = 0x10                               // QAM: unrestricted reordering
			binary.BigEndian.PutUint16(p[8:], 0xffff) // busy timeout: unlimited
		}
		return p
	case 0x1c:
		p := make([]byte, 12)
		p[0], p[1] = 0x1c, 0x0a
		return p
	}
	return nil
}

var modePageCodes = []byte{0x08, 0x0a, 0x1c}

func opModeSense(t *task) *checkCond {
	cdb := cdbOf(t)
	lu := t.lu
	ten := len(cdb) == 10
	dbd := cdb[1]&0x08 != 0
	llbaa := ten && cdb[1]&0x10 != 0
	pc := int(cdb[2] >> 6)
	code := cdb[2] & 0x3f
	sub := cdb[3]
	var alloc int
	if ten {
		alloc = int(binary.BigEndian.Uint16(cdb[7:]))
	} else {
		alloc = int(cdb[4])
	}
	if pc == pcSaved {
		return errSavingNotSupp
	}
	var pages []byte
	switch {
	case code == 0x3f:
		if sub != 0 && sub != 0xff {
			return invalidCDB(3, -1)
		}
		for _, c := range modePageCodes {
			pages = append(pages, lu.modePage(c, pc)...)
		}
	default:
		if sub != 0 {
			return invalidCDB(3, -1)
		}
		pages = lu.modePage(code, pc)
		if pages == nil {
			return invalidCDB(2, 5)
		}
	}
	var bd []byte
	if !dbd {
		blocks := lu.blocks()
		if llbaa {
			bd = make([]byte, 16)
			binary.BigEndian.PutUint64(bd, blocks)
			binary.BigEndian.PutUint32(bd[12:], uint32(lu.bs))
		} else {
			bd = make([]byte, 8)
			binary.BigEndian.PutUint32(bd, uint32(min(blocks, 0xffffffff)))
			binary.BigEndian.PutUint32(bd[4:], uint32(lu.bs))
			bd[4] = 0
		}
	}
	devSpecific := byte(0x10) // DPOFUA
	if blockdev.IsReadOnly(lu.dev) {
		devSpecific |= 0x80
	}
	var d []byte
	if ten {
		d = make([]byte, 8, 8+len(bd)+len(pages))
		d[3] = devSpecific
		if llbaa {
			d[4] = 1
		}
		binary.BigEndian.PutUint16(d[6:], uint16(len(bd)))
		d = append(append(d, bd...), pages...)
		binary.BigEndian.PutUint16(d, uint16(len(d)-2))
	} else {
		d = make([]byte, 4, 4+len(bd)+len(pages))
		d[2] = devSpecific
		d[3] = byte(len(bd))
		d = append(append(d, bd...), pages...)
		d[0] = byte(min(len(d)-1, 255))
	}
	t.data = d[:min(len(d), alloc)]
	return nil
}

func opModeSelect(t *task) *checkCond {
	cdb := cdbOf(t)
	lu := t.lu
	ten := len(cdb) == 10
	if cdb[1]&0x01 != 0 {
		return invalidCDB(1, 0) // SP: saving not supported
	}
	var plen, hdr int
	if ten {
		plen, hdr = int(binary.BigEndian.Uint16(cdb[7:])), 8
	} else {
		plen, hdr = int(cdb[4]), 4
	}
	if plen == 0 {
		return nil
	}
	d := t.dataOut(plen)
	if len(d) < plen || plen < hdr {
		return errParamListLen
	}
	wce, changed, c := lu.decodeModeSelect(d, ten)
	if c != nil {
		return c
	}
	if changed {
		lu.mode.wce.Store(wce)
		lu.mu.Lock()
		lu.uaAllLocked(ascModeParamsChanged, t.ns.id)
		lu.mu.Unlock()
	}
	return nil
}

// decodeModeSelect validates a MODE SELECT parameter list against the changeable
// masks and returns the new WCE value.
func (lu *LogicalUnit) decodeModeSelect(d []byte, ten bool) (wce, changed bool, c *checkCond) {
	hdr, bdl := 4, 0
	if ten {
		hdr = 8
		bdl = int(binary.BigEndian.Uint16(d[6:]))
	} else {
		bdl = int(d[3])
	}
	if hdr+bdl > len(d) {
		return false, false, errParamListLen
	}
	if bdl != 0 && bdl != 8 && bdl != 16 {
		return false, false, invalidParam(hdr-1, -1)
	}
	if bdl > 0 {
		b := d[hdr : hdr+bdl]
		blen := binary.BigEndian.Uint32(b[4:]) & 0xffffff
		if bdl == 16 {
			blen = binary.BigEndian.Uint32(b[12:])
		}
		if blen != uint32(lu.bs) {
			return false, false, invalidParam(hdr+bdl-1, -1)
		}
	}
	wce = lu.mode.wce.Load()
	old := wce
	p := d[hdr+bdl:]
	off := hdr + bdl
	for len(p) > 0 {
		if len(p) < 2 {
			return false, false, errParamListLen
		}
		code := p[0] & 0x3f
		if p[0]&0x40 != 0 {
			return false, false, invalidParam(off, 6)
		}
		n := int(p[1]) + 2
		if n > len(p) {
			return false, false, errParamListLen
		}
		cur := lu.modePage(code, pcCurrent)
		mask := lu.modePage(code, pcChangeable)
		if cur == nil || len(cur) != n {
			return false, false, invalidParam(off, -1)
		}
		for i := 2; i < n; i++ {
			if (p[i]^cur[i])&^mask[i] != 0 {
				return false, false, invalidParam(off+i, -1)
			}
		}
		if code == 0x08 {
			wce = p[2]&0x04 != 0
		}
		p = p[n:]
		off += n
	}
	return wce, wce != old, nil
}
