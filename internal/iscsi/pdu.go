package iscsi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// BHSLen is the size of the basic header segment.
const BHSLen = 48

// Opcode is the PDU opcode (BHS byte 0, low 6 bits).
type Opcode uint8

// Initiator opcodes.
const (
	OpNOPOut      Opcode = 0x00
	OpSCSICommand Opcode = 0x01
	OpTaskMgmt    Opcode = 0x02
	OpLogin       Opcode = 0x03
	OpText        Opcode = 0x04
	OpDataOut     Opcode = 0x05
	OpLogout      Opcode = 0x06
	OpSNACK       Opcode = 0x10
)

// Target opcodes.
const (
	OpNOPIn        Opcode = 0x20
	OpSCSIResponse Opcode = 0x21
	OpTaskMgmtResp Opcode = 0x22
	OpLoginResp    Opcode = 0x23
	OpTextResp     Opcode = 0x24
	OpDataIn       Opcode = 0x25
	OpLogoutResp   Opcode = 0x26
	OpR2T          Opcode = 0x31
	OpAsync        Opcode = 0x32
	OpReject       Opcode = 0x3f
)

func (o Opcode) String() string {
	switch o {
	case OpNOPOut:
		return "NOP-Out"
	case OpSCSICommand:
		return "SCSI Command"
	case OpTaskMgmt:
		return "Task Management"
	case OpLogin:
		return "Login"
	case OpText:
		return "Text"
	case OpDataOut:
		return "Data-Out"
	case OpLogout:
		return "Logout"
	case OpSNACK:
		return "SNACK"
	case OpNOPIn:
		return "NOP-In"
	case OpSCSIResponse:
		return "SCSI Response"
	case OpTaskMgmtResp:
		return "Task Management Response"
	case OpLoginResp:
		return "Login Response"
	case OpTextResp:
		return "Text Response"
	case OpDataIn:
		return "Data-In"
	case OpLogoutResp:
		return "Logout Response"
	case OpR2T:
		return "R2T"
	case OpAsync:
		return "Async Message"
	case OpReject:
		return "Reject"
	}
	return fmt.Sprintf("opcode 0x%02x", uint8(o))
}

// Flag bits of BHS byte 1.
const (
	FlagFinal    = 0x80 // F: last PDU of a sequence
	FlagContinue = 0x40 // C: Text/Login continues in the next PDU
	FlagRead     = 0x40 // R: SCSI Command reads
	FlagWrite    = 0x20 // W: SCSI Command writes
	FlagTransit  = 0x80 // T: Login transit to the next stage
	FlagAck      = 0x40 // A: Data-In acknowledge
	FlagOverflow = 0x04 // O: residual overflow (Data-In, SCSI Response)
	FlagUnderflw = 0x02 // U: residual underflow
	FlagStatus   = 0x01 // S: Data-In carries status
	ImmediateBit = 0x40 // I: BHS byte 0, immediate delivery
)

// ReservedTag is the reserved value 0xffffffff of ITT and TTT.
const ReservedTag = 0xffffffff

// Errors of the codec.
var (
	ErrHeaderDigest = errors.New("iscsi: header digest mismatch")
	ErrDataDigest   = errors.New("iscsi: data digest mismatch")
	ErrDataTooLong  = errors.New("iscsi: data segment longer than negotiated")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C is the iSCSI digest of b.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// PDU is one protocol data unit. Data and AHS slices are reused between reads when
// their capacity allows.
type PDU struct {
	BHS  [BHSLen]byte
	AHS  []byte
	Data []byte
}

// Opcode returns the opcode.
func (p *PDU) Opcode() Opcode { return Opcode(p.BHS[0] & 0x3f) }

// Immediate reports the I bit.
func (p *PDU) Immediate() bool { return p.BHS[0]&ImmediateBit != 0 }

// Flags returns BHS byte 1.
func (p *PDU) Flags() byte { return p.BHS[1] }

// DataSegmentLength is the length of the data segment, without padding.
func (p *PDU) DataSegmentLength() int {
	return int(p.BHS[5])<<16 | int(p.BHS[6])<<8 | int(p.BHS[7])
}

// TotalAHSLength is the AHS length in bytes.
func (p *PDU) TotalAHSLength() int { return int(p.BHS[4]) * 4 }

// LUN returns BHS bytes 8..15.
func (p *PDU) LUN() uint64 { return binary.BigEndian.Uint64(p.BHS[8:16]) }

// ITT is the initiator task tag.
func (p *PDU) ITT() uint32 { return binary.BigEndian.Uint32(p.BHS[16:20]) }

// U32 returns the big-endian word at off.
func (p *PDU) U32(off int) uint32 { return binary.BigEndian.Uint32(p.BHS[off : off+4]) }

// SetU32 stores v big-endian at off.
func (p *PDU) SetU32(off int, v uint32) { binary.BigEndian.PutUint32(p.BHS[off:off+4], v) }

// U16 returns the big-endian half word at off.
func (p *PDU) U16(off int) uint16 { return binary.BigEndian.Uint16(p.BHS[off : off+2]) }

// SetU16 stores v big-endian at off.
func (p *PDU) SetU16(off int, v uint16) { binary.BigEndian.PutUint16(p.BHS[off:off+2], v) }

// SetLUN stores lun in bytes 8..15.
func (p *PDU) SetLUN(lun uint64) { binary.BigEndian.PutUint64(p.BHS[8:16], lun) }

// Reset clears the header and empties AHS and Data, keeping their storage.
func (p *PDU) Reset() {
	p.BHS = [BHSLen]byte{}
	p.AHS = p.AHS[:0]
	p.Data = p.Data[:0]
}

// Digests says which digests a connection negotiated.
type Digests struct {
	Header bool
	Data   bool
}

func pad4(n int) int { return (4 - n%4) % 4 }

// ReadPDU reads one PDU into p. maxData bounds the data segment (the receiver's
// MaxRecvDataSegmentLength); a longer one fails with ErrDataTooLong before it is read.
func ReadPDU(r io.Reader, p *PDU, d Digests, maxData int) error {
	if _, err := io.ReadFull(r, p.BHS[:]); err != nil {
		return err
	}
	ahsLen := p.TotalAHSLength()
	if cap(p.AHS) < ahsLen {
		p.AHS = make([]byte, ahsLen)
	}
	p.AHS = p.AHS[:ahsLen]
	if ahsLen > 0 {
		if _, err := io.ReadFull(r, p.AHS); err != nil {
			return fmt.Errorf("read AHS: %w", unexpected(err))
		}
	}
	var word [4]byte
	if d.Header {
		if _, err := io.ReadFull(r, word[:]); err != nil {
			return fmt.Errorf("read header digest: %w", unexpected(err))
		}
		crc := crc32.Update(crc32.Checksum(p.BHS[:], castagnoli), castagnoli, p.AHS)
		if binary.LittleEndian.Uint32(word[:]) != crc {
			return fmt.Errorf("%s PDU: %w", p.Opcode(), ErrHeaderDigest)
		}
	}
	n := p.DataSegmentLength()
	if n > maxData {
		return fmt.Errorf("%s PDU data segment of %d bytes, limit %d: %w", p.Opcode(), n, maxData, ErrDataTooLong)
	}
	if cap(p.Data) < n+pad4(n) {
		p.Data = make([]byte, n+pad4(n))
	}
	p.Data = p.Data[:n+pad4(n)]
	if n > 0 {
		if _, err := io.ReadFull(r, p.Data); err != nil {
			return fmt.Errorf("read %s data segment: %w", p.Opcode(), unexpected(err))
		}
		if d.Data {
			if _, err := io.ReadFull(r, word[:]); err != nil {
				return fmt.Errorf("read data digest: %w", unexpected(err))
			}
			if binary.LittleEndian.Uint32(word[:]) != CRC32C(p.Data) {
				p.Data = p.Data[:n]
				return fmt.Errorf("%s PDU: %w", p.Opcode(), ErrDataDigest)
			}
		}
	}
	p.Data = p.Data[:n]
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

var zeroPad [4]byte

// WritePDU writes p, setting its AHS and data segment lengths. len(p.AHS) must be a
// multiple of 4. Nothing is flushed: w is normally a bufio.Writer flushed per batch.
func WritePDU(w io.Writer, p *PDU, d Digests) error {
	n := len(p.Data)
	if n >= 1<<24 || len(p.AHS)%4 != 0 || len(p.AHS) > 255*4 {
		return fmt.Errorf("write %s PDU: data %d bytes, AHS %d bytes: bad lengths", p.Opcode(), n, len(p.AHS))
	}
	p.BHS[4] = byte(len(p.AHS) / 4)
	p.BHS[5], p.BHS[6], p.BHS[7] = byte(n>>16), byte(n>>8), byte(n)
	if _, err := w.Write(p.BHS[:]); err != nil {
		return err
	}
	if len(p.AHS) > 0 {
		if _, err := w.Write(p.AHS); err != nil {
			return err
		}
	}
	var word [4]byte
	if d.Header {
		crc := crc32.Update(crc32.Checksum(p.BHS[:], castagnoli), castagnoli, p.AHS)
		binary.LittleEndian.PutUint32(word[:], crc)
		if _, err := w.Write(word[:]); err != nil {
			return err
		}
	}
	if n == 0 {
		return nil
	}
	if _, err := w.Write(p.Data); err != nil {
		return err
	}
	pad := zeroPad[:pad4(n)]
	if len(pad) > 0 {
		if _, err := w.Write(pad); err != nil {
			return err
		}
	}
	if d.Data {
		crc := crc32.Update(CRC32C(p.Data), castagnoli, pad)
		binary.LittleEndian.PutUint32(word[:], crc)
		if _, err := w.Write(word[:]); err != nil {
			return err
		}
	}
	return nil
}
