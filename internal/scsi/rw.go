package scsi

import (
	"bytes"
	"encoding/binary"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// rwArgs are the decoded fields of a READ/WRITE/VERIFY-family CDB.
type rwArgs struct {
	lba, n uint64
	flags  byte // byte 1: xxPROTECT (7..5), DPO (4), FUA (3), BYTCHK (2..1)
}

// decodeRW decodes the LBA and transfer length of a 6/10/12/16-byte CDB.
func decodeRW(cdb []byte) rwArgs {
	switch len(cdb) {
	case 6:
		n := uint64(cdb[4])
		return rwArgs{lba: uint64(cdb[1]&0x1f)<<16 | uint64(binary.BigEndian.Uint16(cdb[2:])), n: n}
	case 10:
		return rwArgs{lba: uint64(binary.BigEndian.Uint32(cdb[2:])), n: uint64(binary.BigEndian.Uint16(cdb[7:])), flags: cdb[1]}
	case 12:
		return rwArgs{lba: uint64(binary.BigEndian.Uint32(cdb[2:])), n: uint64(binary.BigEndian.Uint32(cdb[6:])), flags: cdb[1]}
	default:
		return rwArgs{lba: binary.BigEndian.Uint64(cdb[2:]), n: uint64(binary.BigEndian.Uint32(cdb[10:])), flags: cdb[1]}
	}
}

// cdbOf trims the CDB to the length its opcode's group defines.
func cdbOf(t *task) []byte {
	return t.cdb[:handlers[t.cdb[0]].cdbLen]
}

// checkRange validates lba and n blocks against the capacity.
func (lu *LogicalUnit) checkRange(lba, n uint64) *checkCond {
	b := lu.blocks()
	if lba > b || n > b-lba {
		return errLBARange
	}
	return nil
}

// checkWritable refuses writes to a read-only device.
func (lu *LogicalUnit) checkWritable() *checkCond {
	if blockdev.IsReadOnly(lu.dev) {
		return errWriteProtected
	}
	return nil
}

func opRead(t *task) *checkCond {
	cdb := cdbOf(t)
	a := decodeRW(cdb)
	if len(cdb) == 6 && a.n == 0 {
		a.n = 256
	}
	if a.flags&0xe0 != 0 {
		return invalidCDB(1, 7)
	}
	lu := t.lu
	if c := lu.checkRange(a.lba, a.n); c != nil {
		return c
	}
	if a.n > lu.maxXfer {
		return invalidCDB(lenField(len(cdb)), -1)
	}
	bs := uint64(lu.bs)
	total := a.n * bs
	want := min(total, (uint64(t.cmd.ExpectedDataIn)+bs-1)/bs*bs)
	buf := t.allocNoClear(int(want))
	if want > 0 {
		if _, err := lu.dev.ReadAt(buf, int64(a.lba*bs)); err != nil {
			lu.log.Error("read failed", "lba", a.lba, "blocks", a.n, "err", err)
			return errMediumRead
		}
	}
	t.data = buf
	t.inLen = int64(total)
	return nil
}

// lenField is the CDB byte index of the transfer length of a READ/WRITE CDB.
func lenField(cdbLen int) int {
	switch cdbLen {
	case 6:
		return 4
	case 10:
		return 7
	case 12:
		return 6
	}
	return 10
}

func opWrite(t *task) *checkCond {
	cdb := cdbOf(t)
	a := decodeRW(cdb)
	if len(cdb) == 6 && a.n == 0 {
		a.n = 256
	}
	return t.lu.write(t, a, len(cdb))
}

// checkWriteArgs checks what every write-type command checks first: WRPROTECT (must be
// 0), a writable unit, the LBA range, and the transfer length against the block limits
// (lenIdx is the CDB byte of the transfer length, for the sense key specific pointer).
func (lu *LogicalUnit) checkWriteArgs(a rwArgs, lenIdx int) *checkCond {
	if a.flags&0xe0 != 0 {
		return invalidCDB(1, 7)
	}
	if c := lu.checkWritable(); c != nil {
		return c
	}
	if c := lu.checkRange(a.lba, a.n); c != nil {
		return c
	}
	if a.n > lu.maxXfer {
		return invalidCDB(lenIdx, -1)
	}
	return nil
}

// write is the body of WRITE and WRITE AND VERIFY: it writes whole blocks of the data
// the initiator actually sent, at most what the CDB asks for.
func (lu *LogicalUnit) write(t *task, a rwArgs, cdbLen int) *checkCond {
	if c := lu.checkWriteArgs(a, lenField(cdbLen)); c != nil {
		return c
	}
	bs := uint64(lu.bs)
	t.outLen = int64(a.n * bs)
	d := t.cmd.DataOut
	if uint64(len(d)) > a.n*bs {
		d = d[:a.n*bs]
	}
	d = d[:uint64(len(d))/bs*bs]
	if len(d) == 0 {
		return nil
	}
	lu.ioLock.RLock()
	var err error
	if a.flags&0x08 != 0 || (lu.mode.defWCE && !lu.mode.wce.Load()) {
		_, err = blockdev.WriteFUA(lu.dev, d, int64(a.lba*bs))
	} else {
		_, err = lu.dev.WriteAt(d, int64(a.lba*bs))
	}
	lu.ioLock.RUnlock()
	if err != nil {
		lu.log.Error("write failed", "lba", a.lba, "blocks", a.n, "err", err)
		return errMediumWrite
	}
	return nil
}

func opWriteVerify(t *task) *checkCond {
	cdb := cdbOf(t)
	a := decodeRW(cdb)
	if bc := a.flags >> 1 & 3; bc > 1 {
		return invalidCDB(1, 2)
	}
	a.flags &^= 0x06
	return t.lu.write(t, a, len(cdb))
}

func opVerify(t *task) *checkCond {
	cdb := cdbOf(t)
	a := decodeRW(cdb)
	lu := t.lu
	if a.flags&0xe0 != 0 {
		return invalidCDB(1, 7)
	}
	bytchk := a.flags >> 1 & 3
	if bytchk == 2 {
		return invalidCDB(1, 2)
	}
	if c := lu.checkRange(a.lba, a.n); c != nil {
		return c
	}
	if a.n > lu.maxXfer {
		return invalidCDB(lenField(len(cdb)), -1)
	}
	bs := uint64(lu.bs)
	if bytchk == 0 || a.n == 0 {
		return nil
	}
	want := a.n * bs
	if bytchk == 3 {
		want = bs
	}
	d := t.dataOut(int(want))
	if uint64(len(d)) < want {
		return errParamListLen
	}
	buf := make([]byte, a.n*bs)
	if _, err := lu.dev.ReadAt(buf, int64(a.lba*bs)); err != nil {
		lu.log.Error("verify read failed", "lba", a.lba, "blocks", a.n, "err", err)
		return errMediumRead
	}
	for i := uint64(0); i < a.n; i++ {
		exp := d[:bs]
		if bytchk == 1 {
			exp = d[i*bs : (i+1)*bs]
		}
		if off := firstDiff(buf[i*bs:(i+1)*bs], exp); off >= 0 {
			return miscompare(int(i*bs) + off)
		}
	}
	return nil
}

// firstDiff returns the index of the first differing byte, or -1.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func doCompareAndWrite(t *task) *checkCond {
	cdb := t.cdb[:16]
	lu := t.lu
	lba := binary.BigEndian.Uint64(cdb[2:])
	n := uint64(cdb[13])
	if cdb[1]&0xe0 != 0 {
		return invalidCDB(1, 7)
	}
	if c := lu.checkWritable(); c != nil {
		return c
	}
	if n > maxCAWBlocks {
		return invalidCDB(13, -1)
	}
	if c := lu.checkRange(lba, n); c != nil {
		return c
	}
	bs := uint64(lu.bs)
	need := 2 * n * bs
	if uint64(t.cmd.ExpectedDataOut) != need {
		return invalidCDB(13, -1)
	}
	if n == 0 {
		return nil
	}
	d := t.dataOut(int(need))
	if uint64(len(d)) < need {
		return errParamListLen
	}
	verify, data := d[:n*bs], d[n*bs:]
	cur := make([]byte, n*bs)
	lu.ioLock.Lock()
	defer lu.ioLock.Unlock()
	if _, err := lu.dev.ReadAt(cur, int64(lba*bs)); err != nil {
		lu.log.Error("compare and write read failed", "lba", lba, "blocks", n, "err", err)
		return errMediumRead
	}
	if off := firstDiff(cur, verify); off >= 0 {
		return miscompare(off)
	}
	var err error
	if cdb[1]&0x08 != 0 {
		_, err = blockdev.WriteFUA(lu.dev, data, int64(lba*bs))
	} else {
		_, err = lu.dev.WriteAt(data, int64(lba*bs))
	}
	if err != nil {
		lu.log.Error("compare and write failed", "lba", lba, "blocks", n, "err", err)
		return errMediumWrite
	}
	return nil
}

func opORWrite(t *task) *checkCond {
	cdb := t.cdb[:16]
	lu := t.lu
	a := decodeRW(cdb)
	if c := lu.checkWriteArgs(a, 10); c != nil {
		return c
	}
	bs := uint64(lu.bs)
	d := t.dataOut(int(a.n * bs))
	d = d[:uint64(len(d))/bs*bs]
	if len(d) == 0 {
		return nil
	}
	cur := make([]byte, len(d))
	lu.ioLock.Lock()
	defer lu.ioLock.Unlock()
	if _, err := lu.dev.ReadAt(cur, int64(a.lba*bs)); err != nil {
		return errMediumRead
	}
	for i := range cur {
		cur[i] |= d[i]
	}
	var err error
	if a.flags&0x08 != 0 {
		_, err = blockdev.WriteFUA(lu.dev, cur, int64(a.lba*bs))
	} else {
		_, err = lu.dev.WriteAt(cur, int64(a.lba*bs))
	}
	if err != nil {
		lu.log.Error("orwrite failed", "lba", a.lba, "blocks", a.n, "err", err)
		return errMediumWrite
	}
	return nil
}

func opPrefetch(t *task) *checkCond {
	cdb := cdbOf(t)
	var lba, n uint64
	if len(cdb) == 10 {
		lba, n = uint64(binary.BigEndian.Uint32(cdb[2:])), uint64(binary.BigEndian.Uint16(cdb[7:]))
	} else {
		lba, n = binary.BigEndian.Uint64(cdb[2:]), uint64(binary.BigEndian.Uint32(cdb[10:]))
	}
	return t.lu.checkRange(lba, n)
}

func opSyncCache(t *task) *checkCond {
	cdb := cdbOf(t)
	var lba, n uint64
	if len(cdb) == 10 {
		lba, n = uint64(binary.BigEndian.Uint32(cdb[2:])), uint64(binary.BigEndian.Uint16(cdb[7:]))
	} else {
		lba, n = binary.BigEndian.Uint64(cdb[2:]), uint64(binary.BigEndian.Uint32(cdb[10:]))
	}
	lu := t.lu
	if c := lu.checkRange(lba, n); c != nil {
		return c
	}
	if err := lu.dev.Flush(); err != nil {
		lu.log.Error("synchronize cache failed", "err", err)
		return errMediumWrite
	}
	return nil
}

func doReadCapacity10(t *task) *checkCond {
	cdb := t.cdb[:10]
	if cdb[8]&1 == 0 && binary.BigEndian.Uint32(cdb[2:]) != 0 {
		return invalidCDB(2, -1)
	}
	d := t.alloc(8)
	last := t.lu.blocks() - 1
	binary.BigEndian.PutUint32(d, uint32(min(last, 0xffffffff)))
	binary.BigEndian.PutUint32(d[4:], uint32(t.lu.bs))
	t.data = d
	return nil
}

func (lu *LogicalUnit) readCapacity16(t *task) *checkCond {
	alloc := binary.BigEndian.Uint32(t.cdb[10:])
	d := t.alloc(32)
	binary.BigEndian.PutUint64(d, lu.blocks()-1)
	binary.BigEndian.PutUint32(d[8:], uint32(lu.bs))
	if lu.thin {
		d[14] = 0x80 | 0x40 // LBPME, LBPRZ
	}
	t.data = d[:min(32, alloc)]
	return nil
}
