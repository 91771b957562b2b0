package master

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// A connection session is one client connection: the inodes it holds open
// and the locks it took end with it. When a mount dies, its connection
// closes and the master releases both at once (an unlinked file it held
// open is deleted then). A master restart ends every connection; the
// orphans they left are deleted after a grace period in which reconnecting
// clients open their files again (see purgeOrphans). The request handler's context is the
// connection's (proto.ServeConn cancels it when the connection ends), so it
// names the session.

// lockWait is how long a blocking Setlk waits in the master before it
// answers EAGAIN and lets the client ask again (the client retries until its
// request is interrupted).
const lockWait = 2 * time.Second

// orphanGrace is how long after its first client request a master keeps
// the orphans of the previous run for reconnecting clients to reopen: the
// client library's retry time (client.DefaultMasterRetry).
const orphanGrace = 2 * time.Minute

// posixState is the master's in-memory session state; the zero value is
// ready to use.
type posixState struct {
	once     sync.Once
	locks    *lockTable
	mu       sync.Mutex
	nextSess uint64
	byConn   map[<-chan struct{}]*connSession

	closing  atomic.Bool   // the master is shutting down
	stop     chan struct{} // closed by shutdown
	purged   atomic.Bool
	firstReq time.Time
	grace    time.Duration // orphanGrace if zero (tests shorten it)
	reopen   time.Duration // reopenGrace if zero (tests shorten it)
}

// purgeOrphans deletes, once the grace period after the first client
// request has passed, the orphans of the previous run that no reconnecting
// client opened again. Client requests call it, so it needs no goroutine of
// its own; after the purge it costs one atomic load.
func (m *Master) purgeOrphans() {
	p := &m.posix
	if p.purged.Load() {
		return
	}
	p.mu.Lock()
	now := time.Now()
	if p.firstReq.IsZero() {
		p.firstReq = now
	}
	grace := p.grace
	if grace == 0 {
		grace = orphanGrace
	}
	if now.Sub(p.firstReq) < grace || p.purged.Load() {
		p.mu.Unlock()
		return
	}
	p.purged.Store(true)
	p.mu.Unlock()
	freed, err := m.meta.PurgeOrphans()
	if err != nil {
		m.log.Warn("deleting the orphans of the previous run failed", "err", err)
		return
	}
	m.forget(freed)
}

// shutdown marks the master as stopping (Close calls it first).
func (p *posixState) shutdown() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closing.Swap(true) && p.stop != nil {
		close(p.stop)
	}
}

func (p *posixState) stopped() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop == nil {
		p.stop = make(chan struct{})
		if p.closing.Load() {
			close(p.stop)
		}
	}
	return p.stop
}

func (p *posixState) table() *lockTable {
	p.once.Do(func() { p.locks = newLockTable() })
	return p.locks
}

type connSession struct {
	id    uint64
	mu    sync.Mutex
	opens map[uint64]int
}

// sessionOf returns the session of the connection whose handler context is
// ctx, starting it on the connection's first POSIX request.
func (m *Master) sessionOf(ctx context.Context) (*connSession, error) {
	done := ctx.Done()
	if done == nil {
		return nil, fmt.Errorf("master: request outside a client connection: %w", syscall.EINVAL)
	}
	p := &m.posix
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.byConn[done]; s != nil {
		return s, nil
	}
	if p.byConn == nil {
		p.byConn = map[<-chan struct{}]*connSession{}
	}
	p.nextSess++
	s := &connSession{id: p.nextSess, opens: map[uint64]int{}}
	p.byConn[done] = s
	m.wg.Add(1) // the connection's goroutine is in m.wg too, so the count is not zero
	go func() {
		defer m.wg.Done()
		<-done
		p.mu.Lock()
		delete(p.byConn, done)
		p.mu.Unlock()
		m.endConnSession(s, p.stopped())
	}()
	return s, nil
}

// reopenGrace is how long the handles of a closed connection stay counted,
// so that a client that lost its connection (not its process) can open them
// again on a new one before an unlinked file it holds is deleted.
const reopenGrace = 2 * time.Second

func (m *Master) endConnSession(s *connSession, stop <-chan struct{}) {
	m.posix.table().dropSession(s.id)
	s.mu.Lock()
	opens := s.opens
	s.opens = map[uint64]int{}
	s.mu.Unlock()
	if len(opens) == 0 {
		return
	}
	grace := m.posix.reopen
	if grace == 0 {
		grace = reopenGrace
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
		// The master stops, not the client: the handles stay as they are in
		// the store (orphans included) for the next run to reopen.
		return
	}
	for ino, n := range opens {
		for ; n > 0; n-- {
			freed, err := m.meta.ReleaseInode(ino)
			if err != nil {
				m.log.Warn("releasing an open inode of a closed connection failed", "ino", ino, "err", err)
				break
			}
			m.forget(freed)
		}
	}
}

func (s *connSession) opened(ino uint64) {
	s.mu.Lock()
	s.opens[ino]++
	s.mu.Unlock()
}

// released reports whether the session held ino open (and counts one less).
func (s *connSession) released(ino uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opens[ino] == 0 {
		return false
	}
	if s.opens[ino]--; s.opens[ino] == 0 {
		delete(s.opens, ino)
	}
	return true
}

// handlePOSIX answers the messages of proto/posix.go. The reply is nil and
// handled false for any other message.
func (m *Master) handlePOSIX(ctx context.Context, f *proto.Frame) (out []byte, handled bool, err error) {
	d := proto.NewDec(f.Payload)
	var e proto.Enc
	switch f.Type {
	case proto.MsgOpen:
		ino, flags := d.U64(), d.U32()
		if err := d.Finish(); err != nil {
			return nil, true, err
		}
		s, err := m.sessionOf(ctx)
		if err != nil {
			return nil, true, err
		}
		a, err := m.openInode(s, ino, flags&^proto.OpenLoc)
		if err != nil {
			return nil, true, err
		}
		if flags&proto.OpenLoc == 0 {
			a.Encode(&e)
			break
		}
		var ae, le proto.Enc
		a.Encode(&ae)
		e.Bytes(ae.B)
		// The location of chunk 0 for reading, if it has a live copy
		// (else the client asks with ReadChunk, which waits for copies
		// to register after a restart).
		if a.IsRegular() && a.Size > 0 {
			if loc, err := m.chunkLoc(ino, 0, false); err == nil && loc.ID != 0 && len(loc.Servers) > 0 {
				loc.Encode(&le)
			}
		}
		e.Bytes(le.B)
	case proto.MsgRelease:
		n := d.U32()
		if n > proto.MaxRelease {
			return nil, true, fmt.Errorf("release of %d inodes, at most %d: %w", n, proto.MaxRelease, proto.ErrTooLarge)
		}
		inos := make([]uint64, 0, min(int(n), len(d.B)/8))
		for i := uint32(0); i < n && d.Err() == nil; i++ {
			inos = append(inos, d.U64())
		}
		if err := d.Finish(); err != nil {
			return nil, true, err
		}
		s, err := m.sessionOf(ctx)
		if err != nil {
			return nil, true, err
		}
		for _, ino := range inos {
			if !s.released(ino) {
				continue // not open in this session: nothing to release
			}
			freed, err := m.meta.ReleaseInode(ino)
			if err != nil {
				return nil, true, err
			}
			m.forget(freed)
		}
	case proto.MsgCreateOpen:
		parent, name := d.U64(), d.String()
		n := meta.Node{Mode: d.U32(), Uid: d.U32(), Gid: d.U32(), Rdev: d.U32(), Target: d.String()}
		if err := d.Finish(); err != nil {
			return nil, true, err
		}
		s, err := m.sessionOf(ctx)
		if err != nil {
			return nil, true, err
		}
		a, err := m.meta.CreateOpen(parent, name, n)
		if err != nil {
			return nil, true, err
		}
		s.opened(a.Ino)
		a.Encode(&e)
	case proto.MsgCreateOpenLoc:
		out, err := m.createOpenLoc(ctx, f.Payload)
		return out, true, err
	case proto.MsgWriteEndChunk:
		out, err := m.writeEndChunk(f.Payload)
		return out, true, err
	case proto.MsgGetxattr:
		ino, name := d.U64(), d.String()
		if err := d.Finish(); err != nil {
			return nil, true, err
		}
		v, err := m.meta.GetXattr(ino, name)
		if err != nil {
			return nil, true, err
		}
		e.B = v
	case proto.MsgSetxattr:
		ino, name, value, flags := d.U64(), d.String(), d.Bytes(), d.U32()
		if err := d.Finish(); err != nil {
			return nil, true, err
		}
		if err := m.meta.SetXattr(ino, name, value, flags); err != nil {
			return nil, true, err
		}
	case proto.MsgListxattr:
		ino := d.U64()
		if err := d.Finish(); err != nil {
			return nil, true, err
		}
		names, err := m.meta.ListXattr(ino)
		if err != nil {
			return nil, true, err
		}
		e.U32(uint32(len(names)))
		for _, n := range names {
			e.String(n)
		}
	case proto.MsgRemovexattr:
		ino, name := d.U64(), d.String()
		if err := d.Finish(); err != nil {
			return nil, true, err
		}
		if err := m.meta.RemoveXattr(ino, name); err != nil {
			return nil, true, err
		}
	case proto.MsgStatfs:
		if err := d.Finish(); err != nil {
			return nil, true, err
		}
		st := m.statfs()
		st.Encode(&e)
	case proto.MsgGetlk, proto.MsgSetlk:
		var l proto.Lock
		if err := l.DecodeFrom(d); err != nil {
			return nil, true, err
		}
		wait := false
		if f.Type == proto.MsgSetlk {
			wait = d.U8() != 0
		}
		if err := d.Finish(); err != nil {
			return nil, true, err
		}
		s, err := m.sessionOf(ctx)
		if err != nil {
			return nil, true, err
		}
		if f.Type == proto.MsgGetlk {
			c, found := m.posix.table().test(s.id, &l)
			if !found {
				c = l
				c.Type = proto.LockUnlock
			}
			c.Encode(&e)
			break
		}
		if err := m.setLock(ctx, s, &l, wait); err != nil {
			return nil, true, err
		}
	default:
		return nil, false, nil
	}
	return e.B, true, nil
}

func (m *Master) openInode(s *connSession, ino uint64, flags uint32) (*meta.Attr, error) {
	if flags&^proto.OpenTrunc != 0 {
		return nil, fmt.Errorf("open inode %d flags %#x: %w", ino, flags, syscall.EINVAL)
	}
	a, err := m.meta.OpenInode(ino)
	if err != nil {
		return nil, err
	}
	s.opened(ino)
	if flags&proto.OpenTrunc != 0 && a.IsRegular() && a.Size != 0 {
		var zero uint64
		var freed []meta.Chunk
		if a, freed, err = m.meta.Setattr(ino, meta.SetAttrIn{Size: &zero}); err != nil {
			if s.released(ino) {
				if freed, rerr := m.meta.ReleaseInode(ino); rerr == nil {
					m.forget(freed)
				}
			}
			return nil, err
		}
		m.revokeWrites(freed) // sync.go (dfs-durability): before forget drops the holders
		m.forget(freed)
	}
	return a, nil
}

func (m *Master) setLock(ctx context.Context, s *connSession, l *proto.Lock, wait bool) error {
	if _, err := m.meta.Getattr(l.Ino); err != nil {
		return err
	}
	t := m.posix.table()
	deadline := time.NewTimer(lockWait)
	defer deadline.Stop()
	for {
		ok, changed := t.set(s.id, l)
		if ok {
			return nil
		}
		if !wait {
			return fmt.Errorf("lock inode %d bytes %d-%d: %w", l.Ino, l.Start, l.End, syscall.EAGAIN)
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("lock inode %d bytes %d-%d: still held after %s: %w", l.Ino, l.Start, l.End, lockWait, syscall.EAGAIN)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// statfs sums the live chunkservers' space and counts inodes.
func (m *Master) statfs() proto.Statfs {
	var st proto.Statfs
	m.mu.Lock()
	for _, cs := range m.servers {
		if m.alive(cs) {
			st.Total += cs.total
			st.Free += cs.free
		}
	}
	m.mu.Unlock()
	st.Inodes = m.meta.Inodes()
	st.Goal = proto.DefaultGoal
	if root, err := m.meta.Getattr(proto.RootIno); err == nil {
		st.Goal = root.Goal
	}
	return st
}
