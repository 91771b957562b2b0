package proto

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Enc appends big-endian fields to a message payload.
type Enc struct{ B []byte }

// U8 appends one byte.
func (e *Enc) U8(v uint8) { e.B = append(e.B, v) }

// U32 appends a 32-bit value.
func (e *Enc) U32(v uint32) { e.B = binary.BigEndian.AppendUint32(e.B, v) }

// U64 appends a 64-bit value.
func (e *Enc) U64(v uint64) { e.B = binary.BigEndian.AppendUint64(e.B, v) }

// I64 appends a signed 64-bit value.
func (e *Enc) I64(v int64) { e.U64(uint64(v)) }

// Bytes appends a 32-bit length and the bytes.
func (e *Enc) Bytes(v []byte) {
	e.U32(uint32(len(v)))
	e.B = append(e.B, v...)
}

// String appends a 32-bit length and the string.
func (e *Enc) String(v string) {
	e.U32(uint32(len(v)))
	e.B = append(e.B, v...)
}

// Dec reads big-endian fields from a message payload. The first failure is
// sticky: later reads return zero values and Err reports what went wrong, so a
// decoder reads every field and checks once.
type Dec struct {
	B   []byte
	err error
}

// NewDec returns a decoder over b.
func NewDec(b []byte) *Dec { return &Dec{B: b} }

func (d *Dec) need(n int, what string) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || len(d.B) < n {
		d.err = fmt.Errorf("field %s needs %d bytes, %d left: %w", what, n, len(d.B), ErrShort)
		return false
	}
	return true
}

// U8 reads one byte.
func (d *Dec) U8() uint8 {
	if !d.need(1, "u8") {
		return 0
	}
	v := d.B[0]
	d.B = d.B[1:]
	return v
}

// U32 reads a 32-bit value.
func (d *Dec) U32() uint32 {
	if !d.need(4, "u32") {
		return 0
	}
	v := binary.BigEndian.Uint32(d.B)
	d.B = d.B[4:]
	return v
}

// U64 reads a 64-bit value.
func (d *Dec) U64() uint64 {
	if !d.need(8, "u64") {
		return 0
	}
	v := binary.BigEndian.Uint64(d.B)
	d.B = d.B[8:]
	return v
}

// I64 reads a signed 64-bit value.
func (d *Dec) I64() int64 { return int64(d.U64()) }

// Bytes reads a length-prefixed byte string. The result aliases the payload.
func (d *Dec) Bytes() []byte {
	n := d.U32()
	if n > math.MaxInt32 || !d.need(int(n), "bytes") {
		if d.err == nil {
			d.err = fmt.Errorf("byte string of %d bytes: %w", n, ErrShort)
		}
		return nil
	}
	v := d.B[:n:n]
	d.B = d.B[n:]
	return v
}

// String reads a length-prefixed string.
func (d *Dec) String() string { return string(d.Bytes()) }

// Err returns the first decoding error.
func (d *Dec) Err() error { return d.err }

// Finish returns the first decoding error, or ErrTrailing if bytes remain.
func (d *Dec) Finish() error {
	if d.err != nil {
		return d.err
	}
	if len(d.B) != 0 {
		return fmt.Errorf("%d bytes after the last field: %w", len(d.B), ErrTrailing)
	}
	return nil
}
