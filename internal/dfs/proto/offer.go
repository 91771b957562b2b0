package proto

import "fmt"

// Chunk offers: a small file's create and first write in two master round
// trips instead of three. CreateOpenLoc creates and opens a file like
// CreateOpen and offers a chunk for its index 0 (a new chunk id at version
// 1, placed on goal chunkservers) that the chunk map does not hold yet. The
// client writes its first data there and names the chunk in the WriteEnd
// that records the size (WriteEndChunk): the master binds the chunk to the
// file in the same metadata commit. An offer that is never used costs no
// chunkserver anything (copies are created by their first write); one
// written but never bound is deleted on its chunkservers when it expires.
// See "Chunk offers" in docs/protocols/dfs.md.
const (
	// MsgCreateOpenLoc is CreateOpen with a chunk 0 offer in the reply:
	// as Create -> Bytes(Attr), Bytes(ChunkLoc or empty: no offer).
	MsgCreateOpenLoc MsgType = 0x034a
	// MsgWriteEndChunk is WriteEnd that also binds an offered chunk to
	// the file: WriteEndChunk -> Attr. ESTALE if the file's slot holds
	// another chunk or the master does not know the offer (it expired, or
	// the master restarted): the client then writes the data again
	// through WriteChunk.
	MsgWriteEndChunk MsgType = 0x034b
)

func init() {
	typeNames[MsgCreateOpenLoc] = "CreateOpenLoc"
	typeNames[MsgWriteEndChunk] = "WriteEndChunk"
}

// WriteEndChunk records a write's end and mtime (as WriteEnd) and binds
// chunk ID at Version as chunk Index of file Ino.
type WriteEndChunk struct {
	Ino     uint64
	Size    uint64 // the write's end; the file grows to it if smaller
	Mtime   int64
	Index   uint32
	ID      uint64
	Version uint32
}

// Encode appends m to e.
func (m *WriteEndChunk) Encode(e *Enc) {
	e.U64(m.Ino)
	e.U64(m.Size)
	e.I64(m.Mtime)
	e.U32(m.Index)
	e.U64(m.ID)
	e.U32(m.Version)
}

// Decode reads m from b.
func (m *WriteEndChunk) Decode(b []byte) error {
	d := NewDec(b)
	m.Ino, m.Size, m.Mtime = d.U64(), d.U64(), d.I64()
	m.Index, m.ID, m.Version = d.U32(), d.U64(), d.U32()
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode WriteEndChunk: %w", err)
	}
	if m.ID == 0 {
		return fmt.Errorf("decode WriteEndChunk: chunk id 0: %w", ErrBadField)
	}
	return nil
}
