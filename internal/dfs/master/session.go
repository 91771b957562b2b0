package master

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// Retried namespace changes.
//
// A client that loses the master (a broken connection, a master restart)
// sends its request again. Reads and absolute changes (setattr, write end,
// chunk allocation) may simply run twice; create, link, unlink and rename
// (and CreateOpen) may not: the first run may have succeeded before the reply was lost, and
// the second would fail with EEXIST or ENOENT. The client therefore wraps
// those in a SessionOp (session id, request number). Before running one the
// master records an intent (meta.PutIntent) holding what it needs to
// recognise the change as done: the inode a name held before. The intent is
// ordered before the change in the write-ahead log, so after a crash a
// change is never present without its intent.
//
// When the first run ends, its answer is added to the intent (again without
// an fsync of its own; the next commit's fsync carries it). A SessionOp
// whose intent exists is a retry: the master waits for the first run (if
// this process still runs it) and repeats its answer. If the answer was lost
// in a crash (the run was in flight), it checks the namespace: if the change
// is visible it answers success without running it again; otherwise it runs
// it, and its answer is the true one.

// intentTTL is how long an intent is kept: longer than a client retries
// (client.DefaultMasterRetry, 2 minutes).
const intentTTL = 3 * time.Minute

type reqKey struct{ session, seq uint64 }

type intent struct {
	typ  proto.MsgType
	pre  uint64        // the inode named by the request before it ran (0: none)
	at   time.Time     // when recorded
	done chan struct{} // closed when the first run ended
	// The first run's answer, once known: reply, or err if failed.
	answered bool
	reply    []byte
	err      *proto.ErrorReply
}

// Intent record: type u16, pre u64, then optionally the answer: state u8
// (1 reply, 2 error) and the reply payload or the encoded ErrorReply.
func (in *intent) encode() []byte {
	var e proto.Enc
	e.B = binary.BigEndian.AppendUint16(e.B, uint16(in.typ))
	e.U64(in.pre)
	switch {
	case in.answered && in.err != nil:
		e.U8(2)
		in.err.Encode(&e)
	case in.answered:
		e.U8(1)
		e.B = append(e.B, in.reply...)
	}
	return e.B
}

func decodeIntent(v []byte) (*intent, bool) {
	if len(v) < 10 {
		return nil, false
	}
	in := &intent{typ: proto.MsgType(binary.BigEndian.Uint16(v)), pre: binary.BigEndian.Uint64(v[2:])}
	if len(v) == 10 {
		return in, true
	}
	switch v[10] {
	case 1:
		in.answered, in.reply = true, append([]byte(nil), v[11:]...)
	case 2:
		var er proto.ErrorReply
		if er.Decode(v[11:]) != nil {
			return nil, false
		}
		in.answered, in.err = true, &er
	default:
		return nil, false
	}
	return in, true
}

// needsIntent reports whether a message type needs an intent to be retried.
func needsIntent(t proto.MsgType) bool {
	switch t {
	case proto.MsgCreate, proto.MsgCreateOpen, proto.MsgCreateOpenLoc, proto.MsgLink, proto.MsgUnlink, proto.MsgRename:
		return true
	}
	return false
}

// loadIntents reads the intents left by the previous run.
func (m *Master) loadIntents() error {
	ins, err := m.meta.Intents()
	if err != nil {
		return err
	}
	closed := make(chan struct{})
	close(closed)
	for _, rec := range ins {
		in, ok := decodeIntent(rec.Value)
		if !ok {
			m.log.Warn("skipping an undecodable request intent", "session", fmt.Sprintf("%016x", rec.Session), "seq", rec.Seq)
			continue
		}
		in.at, in.done = time.Unix(rec.At, 0), closed
		m.intents[reqKey{rec.Session, rec.Seq}] = in
	}
	return nil
}

// expireIntents forgets intents older than intentTTL.
func (m *Master) expireIntents(now time.Time) {
	cut := now.Add(-intentTTL)
	m.reqMu.Lock()
	for k, in := range m.intents {
		if in.at.Before(cut) {
			delete(m.intents, k)
		}
	}
	m.reqMu.Unlock()
	if err := m.meta.DropIntentsBefore(cut); err != nil {
		m.log.Warn("dropping old request intents failed", "err", err)
	}
}

// handleClientReq is the client port's handler: it unwraps SessionOps and,
// just after a restart, holds chunk requests until the chunkservers have
// reported the copies, then passes the request to handleClient.
func (m *Master) handleClientReq(ctx context.Context, f *proto.Frame) ([]byte, error) {
	switch f.Type {
	case proto.MsgSessionOp:
		return m.sessionOp(ctx, f)
	case proto.MsgReadChunk, proto.MsgRecoverChunk:
		m.awaitCopies(ctx, f.Payload)
	case proto.MsgWriteChunk:
		// One WriteChunk per chunk at a time: a second one for a chunk
		// being allocated would find it without copies yet.
		unlock := m.lockChunk(f.Payload)
		defer unlock()
		m.awaitCopies(ctx, f.Payload)
		m.awaitReplication(ctx, f.Payload)
		m.bumpIfDegraded(ctx, f.Payload)
		out, err := m.handleClient(ctx, f)
		if err == nil && len(out) >= 8 {
			m.mu.Lock()
			m.lastWrite[binary.BigEndian.Uint64(out)] = time.Now()
			m.mu.Unlock()
		}
		return out, err
	}
	return m.handleClient(ctx, f)
}

// awaitReplication holds a WriteChunk while the chunk is being copied, so
// that the client gets (and writes) the new copy too, then takes the write
// lease on the chunk.
func (m *Master) awaitReplication(ctx context.Context, payload []byte) {
	d := proto.NewDec(payload)
	ino, idx := d.U64(), d.U32()
	if d.Err() != nil {
		return
	}
	c, err := m.meta.Chunk(ino, idx)
	if err != nil || c.ID == 0 {
		return
	}
	for {
		m.mu.Lock()
		ch := m.replicating[c.ID]
		if ch == nil {
			// Taken under the lock that addCopy checks: no copy starts now.
			m.lastWrite[c.ID] = time.Now()
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

func (m *Master) sessionOp(ctx context.Context, f *proto.Frame) ([]byte, error) {
	var op proto.SessionOp
	if err := op.Decode(f.Payload); err != nil {
		return nil, err
	}
	inner := &proto.Frame{Type: op.Type, ID: f.ID, Payload: op.Payload}
	if !needsIntent(op.Type) {
		return m.handleClientReq(ctx, inner)
	}
	key := reqKey{op.Session, op.Seq}
	m.reqMu.Lock()
	in := m.intents[key]
	if in == nil {
		in = &intent{typ: op.Type, at: time.Now(), done: make(chan struct{})}
		m.intents[key] = in
		m.reqMu.Unlock()
		return m.firstRun(ctx, key, in, inner)
	}
	m.reqMu.Unlock()
	select {
	case <-in.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if in.answered {
		if in.err != nil {
			return nil, in.err
		}
		return in.reply, nil
	}
	if out, ok := m.resolve(in, inner); ok {
		m.log.Debug("retried request already applied", "session", fmt.Sprintf("%016x", op.Session), "seq", op.Seq, "type", op.Type.String())
		return out, nil
	}
	return m.handleClient(ctx, inner)
}

func (m *Master) firstRun(ctx context.Context, key reqKey, in *intent, f *proto.Frame) ([]byte, error) {
	defer close(in.done)
	in.pre = m.preInode(f)
	rec := meta.Intent{At: in.at.Unix(), Session: key.session, Seq: key.seq, Value: in.encode()}
	if err := m.meta.PutIntent(rec); err != nil {
		return nil, err
	}
	out, err := m.handleClient(ctx, f)
	if err != nil {
		in.err = proto.NewErrorReply(err)
	} else {
		in.reply = out
	}
	in.answered = true
	rec.Value = in.encode()
	if err := m.meta.PutIntent(rec); err != nil {
		m.log.Warn("recording a request's answer failed", "err", err)
	}
	return out, err
}

// preInode returns the inode that the name a request changes holds now: the
// new name of a create or link, the name an unlink removes, the source of a
// rename.
func (m *Master) preInode(f *proto.Frame) uint64 {
	d := proto.NewDec(f.Payload)
	var parent uint64
	var name string
	switch f.Type {
	case proto.MsgCreate, proto.MsgCreateOpen, proto.MsgCreateOpenLoc, proto.MsgUnlink, proto.MsgRename:
		parent, name = d.U64(), d.String()
	case proto.MsgLink:
		d.U64()
		parent, name = d.U64(), d.String()
	}
	if d.Err() != nil {
		return 0
	}
	a, err := m.meta.Lookup(parent, name)
	if err != nil {
		return 0
	}
	return a.Ino
}

// resolve answers a retry whose change is already visible in the namespace.
func (m *Master) resolve(in *intent, f *proto.Frame) ([]byte, bool) {
	d := proto.NewDec(f.Payload)
	var e proto.Enc
	switch f.Type {
	case proto.MsgCreate, proto.MsgCreateOpen, proto.MsgCreateOpenLoc:
		parent, name := d.U64(), d.String()
		if d.Err() != nil || in.pre != 0 {
			return nil, false // the name existed: the first run failed with EEXIST too
		}
		a, err := m.meta.Lookup(parent, name)
		if err != nil {
			return nil, false
		}
		if f.Type != proto.MsgCreateOpenLoc {
			a.Encode(&e)
			return e.B, true
		}
		// The offer of the lost answer is gone with it: none.
		var ae proto.Enc
		a.Encode(&ae)
		e.Bytes(ae.B)
		e.Bytes(nil)
		return e.B, true
	case proto.MsgLink:
		ino, parent, name := d.U64(), d.U64(), d.String()
		if d.Err() != nil || in.pre != 0 {
			return nil, false
		}
		a, err := m.meta.Lookup(parent, name)
		if err != nil || a.Ino != ino {
			return nil, false
		}
		a.Encode(&e)
		return e.B, true
	case proto.MsgUnlink:
		parent, name := d.U64(), d.String()
		if d.Err() != nil || in.pre == 0 {
			return nil, false
		}
		a, err := m.meta.Lookup(parent, name)
		if errors.Is(err, syscall.ENOENT) || (err == nil && a.Ino != in.pre) {
			return nil, true
		}
	case proto.MsgRename:
		d.U64()
		_ = d.String()
		np, nn := d.U64(), d.String()
		if d.Err() != nil || in.pre == 0 {
			return nil, false
		}
		if a, err := m.meta.Lookup(np, nn); err == nil && a.Ino == in.pre {
			return nil, true
		}
	}
	return nil, false
}

// awaitCopies holds a chunk request for up to the heartbeat timeout after a
// restart until the chunk's copies (or, for a new chunk, enough live
// chunkservers) have reported, so that clients riding out a master restart
// do not see a chunk without copies.
func (m *Master) awaitCopies(ctx context.Context, payload []byte) {
	if !m.restarted || time.Since(m.started) > m.cfg.HeartbeatTimeout {
		return
	}
	d := proto.NewDec(payload)
	ino, idx := d.U64(), d.U32()
	if d.Err() != nil {
		return
	}
	a, err := m.meta.Getattr(ino)
	if err != nil {
		return
	}
	goal := max(1, int(a.Goal))
	for time.Since(m.started) < m.cfg.HeartbeatTimeout {
		c, err := m.meta.Chunk(ino, idx)
		if err != nil {
			return
		}
		if c.ID != 0 && len(m.locations(c)) >= goal {
			return
		}
		if c.ID == 0 {
			m.mu.Lock()
			n := len(m.liveLocked())
			m.mu.Unlock()
			if n >= goal {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// bumpIfDegraded runs before a write to an existing chunk that has fewer
// live copies than its goal: it moves the live copies to a new version
// (recoverChunk), so that a copy on an absent chunkserver, which will miss
// this write, can never be served again when its server returns.
func (m *Master) bumpIfDegraded(ctx context.Context, payload []byte) {
	d := proto.NewDec(payload)
	ino, idx := d.U64(), d.U32()
	if d.Err() != nil {
		return
	}
	c, err := m.meta.Chunk(ino, idx)
	if err != nil || c.ID == 0 {
		return
	}
	a, err := m.meta.Getattr(ino)
	if err != nil {
		return
	}
	live := m.locations(c)
	m.mu.Lock()
	known := len(m.locs[c.ID])
	m.mu.Unlock()
	if len(live) == 0 || (len(live) >= int(a.Goal) && len(live) == known) {
		return
	}
	if _, err := m.recoverChunk(ctx, ino, idx); err != nil {
		m.log.Warn("new version before writing a degraded chunk failed", "chunk", fmt.Sprintf("%016x", c.ID), "err", err)
	}
}

// lockChunk serialises WriteChunk requests for one (inode, index); it
// returns the unlock function.
func (m *Master) lockChunk(payload []byte) func() {
	d := proto.NewDec(payload)
	k := chunkSlot{d.U64(), d.U32()}
	m.slotMu.Lock()
	l := m.slots[k]
	if l == nil {
		l = &slotLock{}
		m.slots[k] = l
	}
	l.users++
	m.slotMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		m.slotMu.Lock()
		if l.users--; l.users == 0 {
			delete(m.slots, k)
		}
		m.slotMu.Unlock()
	}
}

type chunkSlot struct {
	ino uint64
	idx uint32
}

type slotLock struct {
	mu    sync.Mutex
	users int
}
