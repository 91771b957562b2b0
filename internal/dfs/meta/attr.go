// Package meta is the DFS master's durable metadata: the namespace (inodes,
// directory entries, xattrs) and the chunk map (file -> chunk index -> chunk
// id and version), kept in a pebble database. Every mutation is applied in one
// batch and returns only after the write-ahead log is synced; concurrent
// mutations share one fsync (group commit). See docs/formats/dfs-meta.md.
package meta

import "github.com/rampart-storage/rampart/internal/dfs/proto"

// The namespace types are the wire types, so the master stores what it sends.
type (
	// Attr is an inode's attributes.
	Attr = proto.Attr
	// Node describes an inode to create.
	Node = proto.Node
	// Dirent is one directory entry.
	Dirent = proto.Dirent
)

// Constants shared with the wire protocol.
const (
	RootIno     = proto.RootIno
	DefaultGoal = proto.DefaultGoal
	ChunkSize   = proto.ChunkSize
)

// Chunk is one entry of a file's chunk map.
type Chunk struct {
	ID      uint64
	Version uint32
}
