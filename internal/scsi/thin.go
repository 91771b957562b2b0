package scsi

import (
	"encoding/binary"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

func doUnmap(t *task) *checkCond {
	cdb := t.cdb[:10]
	lu := t.lu
	if cdb[1]&0x01 != 0 {
		return invalidCDB(1, 0) // ANCHOR: anchored LBAs are not supported
	}
	plen := int(binary.BigEndian.Uint16(cdb[7:]))
	if plen == 0 {
		return nil
	}
	d := t.dataOut(plen)
	if c := lu.checkWritable(); c != nil {
		return c
	}
	if plen < 8 || len(d) < 8 {
		return errParamListLen
	}
	descs, c := decodeUnmapList(d)
	if c != nil {
		return c
	}
	for _, ds := range descs {
		if c := lu.checkRange(ds.lba, ds.n); c != nil {
			return c
		}
	}
	bs := int64(lu.bs)
	lu.ioLock.RLock()
	defer lu.ioLock.RUnlock()
	for _, ds := range descs {
		if ds.n == 0 {
			continue
		}
		if err := blockdev.Unmap(lu.dev, int64(ds.lba)*bs, int64(ds.n)*bs); err != nil {
			lu.log.Error("unmap failed", "lba", ds.lba, "blocks", ds.n, "err", err)
			return errMediumWrite
		}
	}
	return nil
}

// unmapDesc is one UNMAP block descriptor.
type unmapDesc struct{ lba, n uint64 }

// decodeUnmapList decodes an UNMAP parameter list (SBC-4 5.30.2).
func decodeUnmapList(d []byte) ([]unmapDesc, *checkCond) {
	if len(d) < 8 {
		return nil, errParamListLen
	}
	bdl := int(binary.BigEndian.Uint16(d[2:]))
	body := d[8:]
	if bdl > len(body) {
		bdl = len(body)
	}
	k := bdl / 16
	if k > maxUnmapDescriptors {
		return nil, invalidParam(2, -1)
	}
	out := make([]unmapDesc, 0, k)
	for i := 0; i < k; i++ {
		b := body[16*i:]
		ds := unmapDesc{lba: binary.BigEndian.Uint64(b), n: uint64(binary.BigEndian.Uint32(b[8:]))}
		if ds.n > maxUnmapBlocks {
			return nil, invalidParam(8+16*i+8, -1)
		}
		out = append(out, ds)
	}
	return out, nil
}

func opWriteSame(t *task) *checkCond {
	cdb := cdbOf(t)
	lu := t.lu
	var lba, n uint64
	ndob := false
	if len(cdb) == 10 {
		lba, n = uint64(binary.BigEndian.Uint32(cdb[2:])), uint64(binary.BigEndian.Uint16(cdb[7:]))
	} else {
		lba, n = binary.BigEndian.Uint64(cdb[2:]), uint64(binary.BigEndian.Uint32(cdb[10:]))
		ndob = cdb[1]&0x01 != 0
	}
	flags := cdb[1]
	if flags&0xe0 != 0 {
		return invalidCDB(1, 7)
	}
	if flags&0x10 != 0 {
		return invalidCDB(1, 4) // ANCHOR
	}
	if c := lu.checkWritable(); c != nil {
		return c
	}
	if n == 0 {
		return invalidCDB(lenField(len(cdb)), -1) // WSNZ is set in VPD 0xB0
	}
	if n > maxWriteSameBlocks {
		return invalidCDB(lenField(len(cdb)), -1)
	}
	if c := lu.checkRange(lba, n); c != nil {
		return c
	}
	bs := int64(lu.bs)
	var block []byte
	if !ndob {
		d := t.dataOut(lu.bs)
		if len(d) < lu.bs {
			return errParamListLen
		}
		block = d
	}
	off, length := int64(lba)*bs, int64(n)*bs
	zero := block == nil || isZero(block)
	lu.ioLock.RLock()
	defer lu.ioLock.RUnlock()
	var err error
	switch {
	case zero && flags&0x08 != 0:
		err = blockdev.Unmap(lu.dev, off, length)
	case zero:
		err = blockdev.WriteZeroes(lu.dev, off, length)
	default:
		err = lu.writeRepeated(block, off, length)
	}
	if err != nil {
		lu.log.Error("write same failed", "lba", lba, "blocks", n, "err", err)
		return errMediumWrite
	}
	return nil
}

// writeRepeated writes block over [off, off+length) in chunks of up to 1 MiB.
func (lu *LogicalUnit) writeRepeated(block []byte, off, length int64) error {
	chunk := make([]byte, min(length, 1<<20))
	for i := 0; i < len(chunk); i += len(block) {
		copy(chunk[i:], block)
	}
	for length > 0 {
		n := min(length, int64(len(chunk)))
		if _, err := lu.dev.WriteAt(chunk[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// getLBAStatus answers GET LBA STATUS (SERVICE ACTION IN(16) 0x12).
func (lu *LogicalUnit) getLBAStatus(t *task) *checkCond {
	cdb := t.cdb[:16]
	lba := binary.BigEndian.Uint64(cdb[2:])
	alloc := binary.BigEndian.Uint32(cdb[10:])
	blocks := lu.blocks()
	if lba >= blocks {
		return errLBARange
	}
	bs := int64(lu.bs)
	maxDesc := 64
	if alloc < 8+16*64 {
		maxDesc = max(1, (int(alloc)-8+15)/16)
	}
	d := make([]byte, 8, 8+16*maxDesc)
	rep, ok := lu.dev.(blockdev.LBAStatusReporter)
	cur := lba
	for len(d) < 8+16*maxDesc && cur < blocks {
		ext := blockdev.Extent{Off: int64(cur) * bs, Length: int64(blocks-cur) * bs, Mapped: true}
		if ok {
			e, err := rep.MappedExtent(int64(cur) * bs)
			if err != nil {
				lu.log.Error("get lba status failed", "lba", cur, "err", err)
				return errMediumRead
			}
			ext = e
		}
		n := uint64(ext.Length / bs)
		if n == 0 {
			break
		}
		n = min(n, blocks-cur, 0xffffffff)
		var desc [16]byte
		binary.BigEndian.PutUint64(desc[:], cur)
		binary.BigEndian.PutUint32(desc[8:], uint32(n))
		if !ext.Mapped {
			desc[12] = 1
		}
		d = append(d, desc[:]...)
		cur += n
	}
	binary.BigEndian.PutUint32(d, uint32(len(d)-4))
	t.data = d[:min(len(d), int(alloc))]
	return nil
}
