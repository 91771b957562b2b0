package scsi

import "encoding/binary"

// VPD pages this package serves.
var vpdPages = []byte{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2}

// Version descriptors: SAM-5, SPC-4, SBC-3, iSCSI.
var versionDescriptors = []uint16{0x00a0, 0x0460, 0x04c0, 0x0960}

func opInquiryFn(t *task) *checkCond {
	cdb := t.cdb[:6]
	if cdb[1]&0x02 != 0 {
		return invalidCDB(1, 1) // CMDDT
	}
	alloc := int(binary.BigEndian.Uint16(cdb[3:]))
	var d []byte
	if cdb[1]&0x01 == 0 {
		if cdb[2] != 0 {
			return invalidCDB(2, -1)
		}
		d = t.lu.standardInquiry(t)
	} else {
		var c *checkCond
		d, c = t.lu.vpd(t, cdb[2])
		if c != nil {
			return c
		}
	}
	t.data = d[:min(len(d), alloc)]
	return nil
}

func (lu *LogicalUnit) standardInquiry(t *task) []byte {
	d := t.alloc(66)
	d[2] = 0x06       // SPC-4
	d[3] = 0x10 | 0x2 // HiSup, response data format 2
	d[4] = byte(len(d) - 5)
	d[5] = 0x10 // TPGS: implicit ALUA
	d[7] = 0x02 // CmdQue
	copy(d[8:16], padASCII(lu.cfg.VendorID, 8))
	copy(d[16:32], padASCII(lu.cfg.ProductID, 16))
	copy(d[32:36], padASCII(lu.cfg.Revision, 4))
	for i, v := range versionDescriptors {
		binary.BigEndian.PutUint16(d[58+2*i:], v)
	}
	return d
}

func (lu *LogicalUnit) vpd(t *task, page byte) ([]byte, *checkCond) {
	var d []byte
	switch page {
	case 0x00:
		d = append([]byte{0, 0, 0, byte(len(vpdPages))}, vpdPages...)
	case 0x80:
		s := []byte(lu.cfg.Serial)
		d = append([]byte{0, 0x80, 0, byte(len(s))}, s...)
	case 0x83:
		d = lu.deviceIdentification(t.cmd.Nexus)
	case 0xb0:
		d = make([]byte, 64)
		d[1] = 0xb0
		d[4] = 0x01 // WSNZ
		d[5] = maxCAWBlocks
		binary.BigEndian.PutUint16(d[6:], optimalGranularity)
		binary.BigEndian.PutUint32(d[8:], uint32(lu.maxXfer))
		binary.BigEndian.PutUint32(d[12:], uint32(lu.maxXfer))
		if lu.thin {
			binary.BigEndian.PutUint32(d[20:], maxUnmapBlocks)
			binary.BigEndian.PutUint32(d[24:], maxUnmapDescriptors)
			binary.BigEndian.PutUint32(d[28:], optimalGranularity)
			d[32] = 0x80 // UGAVALID, alignment 0
		}
		binary.BigEndian.PutUint64(d[36:], maxWriteSameBlocks)
	case 0xb1:
		d = make([]byte, 64)
		d[1] = 0xb1
		binary.BigEndian.PutUint16(d[4:], 1) // non-rotating medium
	case 0xb2:
		d = make([]byte, 8)
		d[1] = 0xb2
		if lu.thin {
			d[5] = 0x80 | 0x40 | 0x20 | 0x04 // LBPU, LBPWS, LBPWS10, LBPRZ
			d[6] = 0x02                      // thin provisioned
		}
	default:
		return nil, invalidCDB(2, -1)
	}
	binary.BigEndian.PutUint16(d[2:], uint16(len(d)-4))
	return d, nil
}

// deviceIdentification builds VPD page 0x83 for a command arriving on nexus n.
func (lu *LogicalUnit) deviceIdentification(n *Nexus) []byte {
	d := []byte{0, 0x83, 0, 0}
	// NAA IEEE Registered Extended, associated with the logical unit.
	d = append(d, 0x01, 0x03, 0, 16)
	d = append(d, lu.naa[:]...)
	// T10 vendor ID based.
	t10 := append(padASCII(lu.cfg.VendorID, 8), []byte(lu.cfg.Serial)...)
	d = append(d, 0x02, 0x01, 0, byte(len(t10)))
	d = append(d, t10...)
	if n != nil && n.Port.RelativeID != 0 {
		d = append(d, 0x51, 0x94, 0, 4, 0, 0, byte(n.Port.RelativeID>>8), byte(n.Port.RelativeID))
		d = append(d, 0x51, 0x95, 0, 4, 0, 0, byte(n.Port.GroupID>>8), byte(n.Port.GroupID))
	}
	if n != nil && n.Port.Name != "" {
		name := []byte(n.Port.Name)
		name = append(name, 0)
		for len(name)%4 != 0 {
			name = append(name, 0)
		}
		if len(name) <= 252 {
			d = append(d, 0x53, 0x98, 0, byte(len(name)))
			d = append(d, name...)
		}
	}
	return d
}
