package proto

import "fmt"

// Durability messages: fsync through the mount (ChunkSync to every copy of
// the chunks a file wrote, MetaSync to the master's metadata log) and the
// re-assertion of file locks on a new master connection (LockReclaim). See
// "Durability and lock reclaim" in docs/protocols/dfs.md.
const (
	// MsgChunkSync asks a chunkserver to fdatasync chunks (client ->
	// chunkserver): ChunkSync -> ChunkSyncReply.
	MsgChunkSync MsgType = 0x0110
	// MsgLockReclaim takes a lock again on a new connection to the master
	// (client -> master): Lock -> empty (EAGAIN if another session holds a
	// conflicting lock). It is granted during the restarted master's lock
	// grace period, when new Setlk requests wait.
	MsgLockReclaim MsgType = 0x03a0
	// MsgMetaSync returns once every metadata change the master answered
	// before it is on disk (client -> master): empty -> empty.
	MsgMetaSync MsgType = 0x03a1
)

func init() {
	for t, n := range map[MsgType]string{
		MsgChunkSync: "ChunkSync", MsgLockReclaim: "LockReclaim", MsgMetaSync: "MetaSync",
	} {
		typeNames[t] = n
	}
}

// MaxSyncChunks bounds the chunks of one ChunkSync message.
const MaxSyncChunks = 4096

// ChunkSync names the chunks a chunkserver must fdatasync. A copy held at
// the named version or a newer one (a version move keeps the data) counts;
// an older or absent copy fails that chunk.
type ChunkSync struct {
	Chunks []ChunkRef
}

// Encode appends m to e.
func (m *ChunkSync) Encode(e *Enc) {
	e.U32(uint32(len(m.Chunks)))
	for _, c := range m.Chunks {
		c.Encode(e)
	}
}

// Decode reads m from b.
func (m *ChunkSync) Decode(b []byte) error {
	d := NewDec(b)
	n := d.U32()
	if n > MaxSyncChunks {
		return fmt.Errorf("decode ChunkSync: %d chunks, at most %d: %w", n, MaxSyncChunks, ErrTooLarge)
	}
	if int(n)*12 > len(d.B) {
		return fmt.Errorf("decode ChunkSync: %d chunks in %d bytes: %w", n, len(d.B), ErrShort)
	}
	m.Chunks = make([]ChunkRef, n)
	for i := range m.Chunks {
		m.Chunks[i] = ChunkRef{ID: d.U64(), Version: d.U32()}
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode ChunkSync: %w", err)
	}
	return nil
}

// ChunkSyncReply holds one errno per chunk of the request, in its order:
// 0 when the chunk's data and name are on disk.
type ChunkSyncReply struct {
	Errnos []uint32
}

// Encode appends m to e.
func (m *ChunkSyncReply) Encode(e *Enc) {
	e.U32(uint32(len(m.Errnos)))
	for _, v := range m.Errnos {
		e.U32(v)
	}
}

// Decode reads m from b.
func (m *ChunkSyncReply) Decode(b []byte) error {
	d := NewDec(b)
	n := d.U32()
	if n > MaxSyncChunks {
		return fmt.Errorf("decode ChunkSyncReply: %d chunks, at most %d: %w", n, MaxSyncChunks, ErrTooLarge)
	}
	if int(n)*4 > len(d.B) {
		return fmt.Errorf("decode ChunkSyncReply: %d chunks in %d bytes: %w", n, len(d.B), ErrShort)
	}
	m.Errnos = make([]uint32, n)
	for i := range m.Errnos {
		m.Errnos[i] = d.U32()
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode ChunkSyncReply: %w", err)
	}
	return nil
}
