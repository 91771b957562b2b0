package client

import (
	"sync"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// locIndex records, per inode, the chunk indexes whose locations this client
// put in its cache, so that an Open forgets one file's locations by their
// keys instead of walking every cached entry (cache.dropFile does, which
// costs an Open time in proportion to all the files read recently).
type locIndex struct {
	mu sync.Mutex
	m  map[uint64]map[uint32]struct{}
}

// maxIndexed bounds the inodes indexed: past it every indexed location is
// dropped from the cache and the index starts afresh (the cache only saves
// round trips).
const maxIndexed = 1 << 16

// add records k; it returns the index's previous content if the index was
// full (for the caller to drop), else nil.
func (x *locIndex) add(k chunkKey) map[uint64]map[uint32]struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	var full map[uint64]map[uint32]struct{}
	if x.m == nil || len(x.m) >= maxIndexed {
		full, x.m = x.m, map[uint64]map[uint32]struct{}{}
	}
	s := x.m[k.ino]
	if s == nil {
		s = map[uint32]struct{}{}
		x.m[k.ino] = s
	}
	s[k.idx] = struct{}{}
	return full
}

// take removes and returns the indexes recorded for ino.
func (x *locIndex) take(ino uint64) map[uint32]struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.m[ino]
	delete(x.m, ino)
	return s
}

// putLoc caches a chunk's location (cache.putLoc) and indexes it.
func (c *Client) putLoc(write bool, k chunkKey, loc *proto.ChunkLoc) {
	c.cache.putLoc(write, k, loc)
	if k.idx == 0 && loc.ID != 0 && len(loc.Servers) > 0 {
		c.hints.put(k.ino, loc)
	}
	for ino, idxs := range c.locs.add(k) {
		for idx := range idxs {
			if ino != k.ino || idx != k.idx {
				c.cache.dropLoc(chunkKey{ino, idx})
			}
		}
	}
}

// forgetLocs drops every cached location of ino (at an Open: close-to-open).
func (c *Client) forgetLocs(ino uint64) {
	for idx := range c.locs.take(ino) {
		c.cache.dropLoc(chunkKey{ino, idx})
	}
}
