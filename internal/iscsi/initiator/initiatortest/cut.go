// Package initiatortest injects link faults under an initiator: a dialer whose
// connections can be cut the way a pulled cable cuts them.
package initiatortest

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// CutDialer opens connections (initiator.Options.DialContext) that one switch, Cut,
// turns into a dead link: a connection takes up to SendBuffer more bytes, as the
// kernel's socket buffer would, then blocks every Write, and drops everything it
// receives, until it is closed. No error is reported: the session sees silence and a
// full send buffer, as when a cable is pulled. While cut, new connections are never
// answered (the dial waits for its context).
type CutDialer struct {
	SendBuffer int // bytes a cut connection still takes; default 256 KiB

	cut   atomic.Bool
	mu    sync.Mutex
	conns []*cutConn
}

// Cut cuts (true) or restores (false) the link of every connection, present and future.
func (d *CutDialer) Cut(cut bool) { d.cut.Store(cut) }

// DialContext is an initiator.Options.DialContext.
func (d *CutDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.cut.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	buf := d.SendBuffer
	if buf == 0 {
		buf = 256 << 10
	}
	cc := &cutConn{Conn: c, cut: &d.cut, sendBuffer: buf, closed: make(chan struct{})}
	d.mu.Lock()
	d.conns = append(d.conns, cc)
	d.mu.Unlock()
	return cc, nil
}

// CloseAll closes every connection the dialer opened (a test's cleanup).
func (d *CutDialer) CloseAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
}

type cutConn struct {
	net.Conn
	cut        *atomic.Bool
	sendBuffer int
	mu         sync.Mutex
	absorbed   int
	closed     chan struct{}
	once       sync.Once
}

func (c *cutConn) Write(b []byte) (int, error) {
	if !c.cut.Load() {
		return c.Conn.Write(b)
	}
	c.mu.Lock()
	if room := c.sendBuffer - c.absorbed; len(b) <= room {
		c.absorbed += len(b)
		c.mu.Unlock()
		return len(b), nil
	}
	c.absorbed = c.sendBuffer
	c.mu.Unlock()
	<-c.closed // the send buffer is full: block until the connection is closed
	return 0, net.ErrClosed
}

func (c *cutConn) Read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		if !c.cut.Load() || err != nil {
			return n, err
		}
		// cut: what arrives is lost on the way
	}
}

func (c *cutConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
