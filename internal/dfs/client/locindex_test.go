package client

import (
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// TestForgetLocs: an Open forgets the reopened file's cached locations and
// no other file's.
func TestForgetLocs(t *testing.T) {
	c := &Client{cache: newCache()}
	loc := &proto.ChunkLoc{ID: 7, Version: 1, Servers: []string{"a:1"}}
	c.putLoc(false, chunkKey{1, 0}, loc)
	c.putLoc(true, chunkKey{1, 3}, loc)
	c.putLoc(false, chunkKey{2, 0}, loc)
	c.forgetLocs(1)
	for _, k := range []chunkKey{{1, 0}, {1, 3}} {
		if c.cache.loc(false, k) != nil || c.cache.loc(true, k) != nil {
			t.Errorf("%+v: still cached after forgetLocs", k)
		}
	}
	if c.cache.loc(false, chunkKey{2, 0}) == nil {
		t.Errorf("another file's location was dropped")
	}
}

// TestLocIndexBounded: past maxIndexed inodes the index starts afresh and
// the locations it held leave the cache, so neither grows without bound.
func TestLocIndexBounded(t *testing.T) {
	c := &Client{cache: newCache()}
	loc := &proto.ChunkLoc{ID: 7, Version: 1, Servers: []string{"a:1"}}
	for ino := uint64(1); ino <= maxIndexed+1; ino++ {
		c.putLoc(false, chunkKey{ino, 0}, loc)
	}
	if n := len(c.locs.m); n != 1 {
		t.Errorf("indexed inodes after the overflow: got %d, want 1", n)
	}
	if c.cache.loc(false, chunkKey{1, 0}) != nil {
		t.Errorf("a location of the full index is still cached")
	}
	if c.cache.loc(false, chunkKey{maxIndexed + 1, 0}) == nil {
		t.Errorf("the location put at the overflow was dropped")
	}
}
