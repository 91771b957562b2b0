package proto

// EncodeHead appends m without its data bytes (up to and including the data
// length): the head that CallParts sends in front of m.Data.
func (m *ChunkWrite) EncodeHead(e *Enc) {
	e.U64(m.ID)
	e.U32(m.Version)
	e.U32(m.Offset)
	e.U8(uint8(len(m.Chain)))
	for _, a := range m.Chain {
		e.String(a)
	}
	e.U32(uint32(len(m.Data)))
}
