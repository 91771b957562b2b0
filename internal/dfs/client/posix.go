package client

import (
	"context"
	"fmt"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// The POSIX surface beyond plain namespace calls: open handles, extended
// attributes, statfs and file locks (see proto/posix.go). Open handles and
// locks belong to this client's connection to the master: they end when the
// connection does.

// Open counts an open handle on ino in the master (so an unlinked file stays
// while open) and returns fresh attributes; flags may hold proto.OpenTrunc.
func (c *Client) Open(ctx context.Context, ino uint64, flags uint32) (*proto.Attr, error) {
	return c.OpenToRead(ctx, ino, flags, 0)
}

// OpenToRead is Open for a reader that expects the file to hold size bytes
// (0: no guess). For a small file whose chunk this client knew, the read of
// its data goes out with the Open and is kept if the reply confirms it
// (speculate.go): the first read then needs no round trip of its own.
func (c *Client) OpenToRead(ctx context.Context, ino uint64, flags uint32, size uint64) (*proto.Attr, error) {
	sp := c.speculate(ino, flags, size)
	var e proto.Enc
	e.U64(ino)
	e.U32(flags | proto.OpenLoc)
	b, err := c.master.Call(ctx, proto.MsgOpen, e.B)
	if err != nil {
		return nil, err
	}
	ab, loc, err := decodeOpenReply(b)
	if err != nil {
		return nil, err
	}
	a, err := c.attrReply(proto.MsgOpen, ab)
	if err != nil {
		return nil, err
	}
	// The reply carries chunk 0's copies: a small file's first read needs
	// no ReadChunk round trip (cached after attrReply dropped the file's
	// entries, like any location the master gives).
	if loc != nil && a.IsRegular() {
		c.putLoc(false, chunkKey{ino, 0}, loc)
	}
	sp.confirm(c, a, loc)
	return a, nil
}

// decodeOpenReply splits an Open reply with proto.OpenLoc into the Attr
// bytes and chunk 0's location (nil if the master sent none).
func decodeOpenReply(b []byte) ([]byte, *proto.ChunkLoc, error) {
	d := proto.NewDec(b)
	ab, lb := d.Bytes(), d.Bytes()
	if err := d.Finish(); err != nil {
		return nil, nil, fmt.Errorf("open reply: %w", err)
	}
	if len(lb) == 0 {
		return ab, nil, nil
	}
	var loc proto.ChunkLoc
	if err := loc.Decode(lb); err != nil {
		return nil, nil, fmt.Errorf("open reply: chunk location: %w", err)
	}
	return ab, &loc, nil
}

// CreateOpen is Create for a file the caller opens at once: one round trip.
func (c *Client) CreateOpen(ctx context.Context, parent uint64, name string, n proto.Node) (*proto.Attr, error) {
	e := createRequest(parent, name, n)
	return c.attrCall(ctx, proto.MsgCreateOpen, &e)
}

// Release drops one open handle on each of inos.
func (c *Client) Release(ctx context.Context, inos ...uint64) error {
	for _, ino := range inos {
		c.offers.drop(ino, nil)
	}
	for len(inos) > 0 {
		n := min(len(inos), proto.MaxRelease)
		var e proto.Enc
		e.U32(uint32(n))
		for _, ino := range inos[:n] {
			e.U64(ino)
		}
		if _, err := c.master.Call(ctx, proto.MsgRelease, e.B); err != nil {
			return err
		}
		inos = inos[n:]
	}
	return nil
}

// Getxattr returns an extended attribute's value (ENODATA if absent).
func (c *Client) Getxattr(ctx context.Context, ino uint64, name string) ([]byte, error) {
	var e proto.Enc
	e.U64(ino)
	e.String(name)
	return c.master.Call(ctx, proto.MsgGetxattr, e.B)
}

// Setxattr sets an extended attribute; flags may hold proto.XattrCreate or
// proto.XattrReplace.
func (c *Client) Setxattr(ctx context.Context, ino uint64, name string, value []byte, flags uint32) error {
	var e proto.Enc
	e.U64(ino)
	e.String(name)
	e.Bytes(value)
	e.U32(flags)
	_, err := c.master.Call(ctx, proto.MsgSetxattr, e.B)
	return err
}

// Listxattr returns the names of ino's extended attributes.
func (c *Client) Listxattr(ctx context.Context, ino uint64) ([]string, error) {
	var e proto.Enc
	e.U64(ino)
	b, err := c.master.Call(ctx, proto.MsgListxattr, e.B)
	if err != nil {
		return nil, err
	}
	d := proto.NewDec(b)
	n := d.U32()
	if int(n) > len(b)/4 {
		return nil, fmt.Errorf("listxattr reply with %d names in %d bytes: %w", n, len(b), proto.ErrShort)
	}
	out := make([]string, 0, n)
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		out = append(out, d.String())
	}
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("listxattr reply: %w", err)
	}
	return out, nil
}

// Removexattr deletes an extended attribute (ENODATA if absent).
func (c *Client) Removexattr(ctx context.Context, ino uint64, name string) error {
	var e proto.Enc
	e.U64(ino)
	e.String(name)
	_, err := c.master.Call(ctx, proto.MsgRemovexattr, e.B)
	return err
}

// Statfs returns the space of the live chunkservers and the inode count.
func (c *Client) Statfs(ctx context.Context) (*proto.Statfs, error) {
	b, err := c.master.Call(ctx, proto.MsgStatfs, nil)
	if err != nil {
		return nil, err
	}
	var st proto.Statfs
	if err := st.Decode(b); err != nil {
		return nil, err
	}
	return &st, nil
}

// Getlk returns a lock that conflicts with l, or l with Type LockUnlock.
func (c *Client) Getlk(ctx context.Context, l *proto.Lock) (*proto.Lock, error) {
	if err := c.lockCheck(l); err != nil { // a lost lock (locks.go; dfs-durability)
		return nil, err
	}
	var e proto.Enc
	l.Encode(&e)
	b, err := c.master.Call(ctx, proto.MsgGetlk, e.B)
	if err != nil {
		return nil, err
	}
	var out proto.Lock
	if err := out.Decode(b); err != nil {
		return nil, err
	}
	return &out, nil
}

// Setlk takes, converts or releases a lock. Without wait a conflicting lock
// fails it with EAGAIN; with wait the master holds the request for a while
// and still answers EAGAIN if the lock stays taken (the caller asks again).
func (c *Client) Setlk(ctx context.Context, l *proto.Lock, wait bool) error {
	if err := c.lockCheck(l); err != nil { // a lost lock (locks.go; dfs-durability)
		return err
	}
	var e proto.Enc
	l.Encode(&e)
	if wait {
		e.U8(1)
	} else {
		e.U8(0)
	}
	_, err := c.master.Call(ctx, proto.MsgSetlk, e.B)
	c.lockDone(l, err) // recorded for reclaim (locks.go; dfs-durability)
	return err
}
