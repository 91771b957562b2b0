package master

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"syscall"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// Client requests, field by field (see docs/protocols/dfs.md):
//
//	Lookup     parent u64, name str            -> Attr
//	Getattr    ino u64                         -> Attr
//	Create     parent u64, name str, mode u32, uid u32, gid u32, rdev u32, target str -> Attr
//	Readdir    ino u64                         -> n u32, n × (name str, ino u64)
//	WriteChunk ino u64, index u32              -> ChunkLoc (allocating and placing a new chunk)
//	ReadChunk  ino u64, index u32              -> ChunkLoc (ID 0 for a hole)
//	WriteEnd   ino u64, size u64, mtime i64    -> Attr
//	Unlink     parent u64, name str, dir u8    -> empty
//	Info       (empty)                         -> JSON Info
//	Rename     oldParent u64, oldName str, newParent u64, newName str, flags u32 (1 NOREPLACE, 2 EXCHANGE) -> empty
//	Link       ino u64, newParent u64, newName str -> Attr
//	RecoverChunk ino u64, index u32            -> ChunkLoc (after a failed write: new version on the reachable copies)
//	Setattr    ino u64, valid u32, mode u32, uid u32, gid u32, size u64, atime i64, mtime i64 -> Attr
//
// The POSIX messages (open handles, xattrs, statfs, locks) are in posix.go.
func (m *Master) handleClient(ctx context.Context, f *proto.Frame) ([]byte, error) {
	m.purgeOrphans()
	m.requests.add(f.Type)
	if out, handled, err := m.handlePOSIX(ctx, f); handled {
		return out, err
	}
	if out, handled, err := m.handleDurability(ctx, f); handled { // sync.go (dfs-durability)
		return out, err
	}
	d := proto.NewDec(f.Payload)
	var e proto.Enc
	var err error
	switch f.Type {
	case proto.MsgLookup:
		parent, name := d.U64(), d.String()
		if err = d.Finish(); err != nil {
			return nil, err
		}
		var a *meta.Attr
		if a, err = m.meta.Lookup(parent, name); err == nil {
			a.Encode(&e)
		}
	case proto.MsgGetattr:
		ino := d.U64()
		if err = d.Finish(); err != nil {
			return nil, err
		}
		var a *meta.Attr
		if a, err = m.meta.Getattr(ino); err == nil {
			a.Encode(&e)
		}
	case proto.MsgCreate:
		parent, name := d.U64(), d.String()
		n := meta.Node{Mode: d.U32(), Uid: d.U32(), Gid: d.U32(), Rdev: d.U32(), Target: d.String()}
		if err = d.Finish(); err != nil {
			return nil, err
		}
		var a *meta.Attr
		if a, err = m.meta.Create(parent, name, n); err == nil {
			a.Encode(&e)
		}
	case proto.MsgReaddir:
		ino := d.U64()
		if err = d.Finish(); err != nil {
			return nil, err
		}
		var ents []meta.Dirent
		if ents, err = m.meta.Readdir(ino); err == nil {
			e.U32(uint32(len(ents)))
			for _, de := range ents {
				e.String(de.Name)
				e.U64(de.Ino)
			}
		}
	case proto.MsgWriteChunk, proto.MsgReadChunk:
		ino, idx := d.U64(), d.U32()
		if err = d.Finish(); err != nil {
			return nil, err
		}
		var loc *proto.ChunkLoc
		if loc, err = m.chunkLoc(ino, idx, f.Type == proto.MsgWriteChunk); err == nil {
			loc.Encode(&e)
		}
	case proto.MsgWriteEnd:
		ino, size, mtime := d.U64(), d.U64(), d.I64()
		if err = d.Finish(); err != nil {
			return nil, err
		}
		var a *meta.Attr
		if a, err = m.meta.SetSize(ino, size, mtime); err == nil {
			a.Encode(&e)
		}
	case proto.MsgUnlink:
		parent, name, dir := d.U64(), d.String(), d.U8()
		if err = d.Finish(); err != nil {
			return nil, err
		}
		var freed []meta.Chunk
		if freed, err = m.meta.Unlink(parent, name, dir != 0); err == nil {
			m.forget(freed)
		}
	case proto.MsgSetattr:
		ino, valid := d.U64(), d.U32()
		mode, uid, gid, size, atime, mtime := d.U32(), d.U32(), d.U32(), d.U64(), d.I64(), d.I64()
		if err = d.Finish(); err != nil {
			return nil, err
		}
		var in meta.SetAttrIn
		if valid&proto.SetMode != 0 {
			in.Mode = &mode
		}
		if valid&proto.SetUid != 0 {
			in.Uid = &uid
		}
		if valid&proto.SetGid != 0 {
			in.Gid = &gid
		}
		if valid&proto.SetSize != 0 {
			in.Size = &size
		}
		if valid&proto.SetAtime != 0 {
			in.Atime = &atime
		}
		if valid&proto.SetMtime != 0 {
			in.Mtime = &mtime
		}
		goal := uint8(mode)
		if valid&proto.SetGoal != 0 {
			if goal == 0 || goal > proto.MaxChain {
				return nil, fmt.Errorf("goal %d of inode %d: %w", goal, ino, syscall.EINVAL)
			}
			in.Goal = &goal
		}
		var a *meta.Attr
		var freed []meta.Chunk
		if a, freed, err = m.meta.Setattr(ino, in); err == nil {
			m.revokeWrites(freed) // sync.go (dfs-durability): before forget drops the holders
			m.forget(freed)
			a.Encode(&e)
		}
	case proto.MsgRename:
		op, on, np, nn, flags := d.U64(), d.String(), d.U64(), d.String(), d.U32()
		if err = d.Finish(); err != nil {
			return nil, err
		}
		var freed []meta.Chunk
		if freed, err = m.meta.Rename(op, on, np, nn, flags); err == nil {
			m.forget(freed)
		}
	case proto.MsgLink:
		ino, np, nn := d.U64(), d.U64(), d.String()
		if err = d.Finish(); err != nil {
			return nil, err
		}
		var a *meta.Attr
		if a, err = m.meta.Link(ino, np, nn); err == nil {
			a.Encode(&e)
		}
	case proto.MsgRecoverChunk:
		ino, idx := d.U64(), d.U32()
		if err = d.Finish(); err != nil {
			return nil, err
		}
		var loc *proto.ChunkLoc
		if loc, err = m.recoverChunk(ctx, ino, idx); err == nil {
			loc.Encode(&e)
		}
	case proto.MsgInfo:
		var info *Info
		if info, err = m.Info(); err == nil {
			e.B, err = json.Marshal(info)
		}
	default:
		return nil, fmt.Errorf("master: client message %s: %w", f.Type, errUnsupported)
	}
	if err != nil {
		return nil, err
	}
	return e.B, nil
}

func (m *Master) chunkLoc(ino uint64, idx uint32, write bool) (*proto.ChunkLoc, error) {
	if !write {
		c, err := m.meta.Chunk(ino, idx)
		if err != nil || c.ID == 0 {
			return &proto.ChunkLoc{}, err
		}
		return &proto.ChunkLoc{ID: c.ID, Version: c.Version, Servers: m.locations(c)}, nil
	}
	a, err := m.meta.Getattr(ino)
	if err != nil {
		return nil, err
	}
	c, created, err := m.meta.AllocChunk(ino, idx)
	if err != nil {
		return nil, err
	}
	loc := &proto.ChunkLoc{ID: c.ID, Version: c.Version}
	if created {
		loc.Servers, err = m.place(c, int(a.Goal))
		return loc, err
	}
	loc.Servers = m.locations(c)
	if len(loc.Servers) == 0 {
		return nil, fmt.Errorf("write chunk %016x of inode %d: no live copy: %w", c.ID, ino, ErrNoSpace)
	}
	return loc, nil
}

// forget drops freed chunks from the location map and queues the deletion
// of their copies (see dropFreed).
func (m *Master) forget(freed []meta.Chunk) { m.dropFreed(freed) }

// Info is the cluster summary `rampart info` prints.
type Info = proto.Info

// Info summarises servers, space and chunk states.
func (m *Master) Info() (*Info, error) {
	var info Info
	m.mu.Lock()
	for _, cs := range m.servers {
		live := m.alive(cs)
		info.Servers = append(info.Servers, proto.ServerInfo{Addr: cs.addr, Live: live, Total: cs.total, Free: cs.free})
		if live {
			info.Space.Total += cs.total
			info.Space.Free += cs.free
		}
	}
	m.mu.Unlock()
	sort.Slice(info.Servers, func(i, j int) bool { return info.Servers[i].Addr < info.Servers[j].Addr })
	err := m.meta.ForEachChunk(func(ino uint64, idx uint32, goal uint8, c meta.Chunk) {
		n := len(m.locations(c))
		info.Chunks.Total++
		info.Chunks.Copies += n
		switch {
		case n == 0:
			info.Chunks.Missing++
		case n < int(goal):
			info.Chunks.Undergoal++
		case n > int(goal):
			info.Chunks.Overgoal++
		default:
			info.Chunks.OK++
		}
	})
	if err != nil {
		return nil, err
	}
	m.copyStates(&info)
	return &info, nil
}
