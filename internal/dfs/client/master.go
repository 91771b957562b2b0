package client

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// DefaultMasterRetry is how long a call keeps retrying while the master is
// unreachable before it fails with EIO.
const DefaultMasterRetry = 2 * time.Minute

// masterConn is the connection to the master, remade when it breaks. A call
// whose connection broke before its reply came is sent again on the next
// connection: the master may or may not have applied it. Reads and absolute
// changes may run twice; create, link, unlink and rename travel inside a
// SessionOp carrying this client's session id and a request number that the
// retry repeats, and the master answers a retry of an applied change with
// success (see master/session.go).
type masterConn struct {
	addr    string
	session uint64
	seq     atomic.Uint64

	mu     sync.Mutex // serialises (re)connecting
	c      *proto.Client
	retry  time.Duration
	hooks  []func(ctx context.Context, c *proto.Client) error
	closed bool
}

func dialMaster(ctx context.Context, addr string) (*masterConn, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("session id: %w", err)
	}
	c, err := proto.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &masterConn{addr: addr, session: binary.BigEndian.Uint64(b[:]), c: c, retry: DefaultMasterRetry}, nil
}

func (m *masterConn) setRetry(d time.Duration) {
	m.mu.Lock()
	m.retry = d
	m.mu.Unlock()
}

func (m *masterConn) onReconnect(fn func(ctx context.Context, c *proto.Client) error) {
	m.mu.Lock()
	m.hooks = append(m.hooks, fn)
	m.mu.Unlock()
}

// Close closes the connection; calls in progress stop retrying.
func (m *masterConn) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return m.c.Close()
}

// conn returns a working connection, dialling a new one if the last broke.
func (m *masterConn) conn(ctx context.Context) (*proto.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("master %s: %w", m.addr, proto.ErrClosed)
	}
	if m.c.Err() == nil {
		return m.c, nil
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := proto.Dial(dctx, m.addr)
	if err != nil {
		return nil, err
	}
	for _, fn := range m.hooks {
		if err := fn(ctx, c); err != nil {
			c.Close()
			return nil, fmt.Errorf("master %s: re-registering after reconnect: %w", m.addr, err)
		}
	}
	m.c = c
	return c, nil
}

// sessionOp reports whether requests of type t travel in a SessionOp.
// readOnly reports whether a request only reads the master's state, so that
// abandoning it when the caller is interrupted changes nothing.
func readOnly(t proto.MsgType) bool {
	switch t {
	case proto.MsgLookup, proto.MsgGetattr, proto.MsgReaddir, proto.MsgReadChunk, proto.MsgInfo,
		proto.MsgGetxattr, proto.MsgListxattr, proto.MsgStatfs, proto.MsgGetlk:
		return true
	}
	return false
}

func sessionOp(t proto.MsgType) bool {
	switch t {
	case proto.MsgCreate, proto.MsgCreateOpen, proto.MsgCreateOpenLoc, proto.MsgLink, proto.MsgUnlink, proto.MsgRename:
		return true
	}
	return false
}

// Call sends a request to the master and returns its reply, retrying on a
// new connection while the master is unreachable (up to the retry time). An
// error reply from the master is final.
func (m *masterConn) Call(ctx context.Context, t proto.MsgType, payload []byte) ([]byte, error) {
	if !readOnly(t) {
		// A change the master may already have made is not abandoned halfway
		// because the caller was interrupted (go-fuse cancels a request's context
		// when the calling thread gets a signal): the answer would be EINTR for a
		// change that happened, and the program's retry would then fail (ENOENT
		// for an unlink that did go through). Reads stay interruptible.
		// A deadline the caller set still holds (Close's bounded flush, tests):
		// only the cancellation is dropped.
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(context.WithoutCancel(ctx), dl)
			defer cancel()
		} else {
			ctx = context.WithoutCancel(ctx)
		}
	}
	if sessionOp(t) {
		var e proto.Enc
		e.B = make([]byte, 0, len(payload)+24)
		(&proto.SessionOp{Session: m.session, Seq: m.seq.Add(1), Type: t, Payload: payload}).Encode(&e)
		t, payload = proto.MsgSessionOp, e.B
	}
	m.mu.Lock()
	retry := m.retry
	m.mu.Unlock()
	deadline := time.Now().Add(retry)
	pause := 20 * time.Millisecond
	for {
		c, err := m.conn(ctx)
		var b []byte
		if err == nil {
			b, err = c.Call(ctx, t, payload)
		}
		var er *proto.ErrorReply
		if err == nil || errors.As(err, &er) || ctx.Err() != nil || errors.Is(err, proto.ErrClosed) && m.isClosed() {
			return b, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("master %s unreachable for %s: %w: %w", m.addr, retry, err, syscall.EIO)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 500*time.Millisecond)
	}
}

func (m *masterConn) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}
