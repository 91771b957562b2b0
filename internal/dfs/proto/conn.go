package proto

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
)

// ErrClosed is returned by calls on a closed client connection.
var ErrClosed = errors.New("proto: connection closed")

// Client multiplexes requests over one connection: each Call gets a request id
// and waits for the reply frame carrying it, so many calls are in flight at once.
type Client struct {
	conn net.Conn

	wmu sync.Mutex
	bw  *bufio.Writer

	mu      sync.Mutex
	nextID  uint32
	pending map[uint32]*call
	err     error // set once the reader stops
}

// call is a request waiting for its reply. When dst is set and the reply is not an
// error and fits, the reader reads the reply's payload straight into dst (no
// allocation, no copy): the caller must not touch dst until the reply is delivered on
// ch (or ch is closed).
type call struct {
	ch  chan *Frame
	dst []byte
}

// Dial connects to addr.
func Dial(ctx context.Context, addr string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return NewClient(c), nil
}

// NewClient starts a client over an established connection.
func NewClient(conn net.Conn) *Client {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c := &Client{conn: conn, bw: bufio.NewWriterSize(conn, 256<<10), pending: map[uint32]*call{}}
	go c.readLoop()
	return c
}

func (c *Client) readLoop() {
	br := bufio.NewReaderSize(c.conn, 256<<10)
	var hb [HeaderSize]byte
	for {
		if _, err := io.ReadFull(br, hb[:]); err != nil {
			c.fail(err)
			return
		}
		h, err := ParseHeader(hb[:])
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		cl := c.pending[h.ID]
		delete(c.pending, h.ID)
		c.mu.Unlock()
		f := &Frame{Type: h.Type, Flags: h.Flags, ID: h.ID}
		if cl != nil && cl.dst != nil && h.Flags&FlagError == 0 && int(h.Length) <= len(cl.dst) {
			f.Payload = cl.dst[:h.Length]
		} else {
			f.Payload = make([]byte, h.Length)
		}
		if _, err := io.ReadFull(br, f.Payload); err != nil {
			c.fail(fmt.Errorf("read %s payload of %d bytes: %w", h.Type, h.Length, err))
			if cl != nil {
				close(cl.ch) // taken from pending, so fail did not close it
			}
			return
		}
		if cl != nil {
			cl.ch <- f
		}
	}
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			err = ErrClosed
		}
		c.err = fmt.Errorf("connection to %s: %w", c.conn.RemoteAddr(), err)
	}
	for id, cl := range c.pending {
		close(cl.ch)
		delete(c.pending, id)
	}
	_ = c.conn.Close()
}

// Err returns why the connection stopped, or nil while it works.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection; pending calls fail with ErrClosed.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	return nil
}

// Call sends a request and waits for its reply payload. An error reply comes
// back as an *ErrorReply.
func (c *Client) Call(ctx context.Context, t MsgType, payload []byte) ([]byte, error) {
	return c.CallParts(ctx, t, payload, nil)
}

// CallParts is Call with the payload given in two parts sent one after the
// other (head, then data), so that a large data block is sent from where it
// lies instead of being copied behind its head first.
func (c *Client) CallParts(ctx context.Context, t MsgType, head, data []byte) ([]byte, error) {
	return c.call(ctx, t, head, data, nil)
}

// CallInto is Call with the reply's payload read into dst when it fits (the result
// then aliases dst); a larger reply, or an error reply, is allocated as Call's.
func (c *Client) CallInto(ctx context.Context, t MsgType, payload, dst []byte) ([]byte, error) {
	return c.call(ctx, t, payload, nil, dst)
}

func (c *Client) call(ctx context.Context, t MsgType, head, data, dst []byte) ([]byte, error) {
	cl := &call{ch: make(chan *Frame, 1), dst: dst}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = cl
	c.mu.Unlock()

	c.wmu.Lock()
	err := writeFrameParts(c.bw, &Frame{Type: t, ID: id, Payload: head}, data)
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
		return nil, fmt.Errorf("send %s: %w", t, err)
	}
	select {
	case f, ok := <-cl.ch:
		if !ok {
			return nil, fmt.Errorf("%s: %w", t, c.Err())
		}
		if f.IsError() {
			var er ErrorReply
			if err := er.Decode(f.Payload); err != nil {
				return nil, fmt.Errorf("%s: %w", t, err)
			}
			return nil, &er
		}
		return f.Payload, nil
	case <-ctx.Done():
		c.mu.Lock()
		_, waiting := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if !waiting && dst != nil {
			// The reader took the call and may be filling dst: the caller gets
			// dst back only once the reader is done with it.
			<-cl.ch
		}
		return nil, fmt.Errorf("%s: %w", t, ctx.Err())
	}
}

// Handler answers one request: the reply payload, or an error sent as an
// ErrorReply.
type Handler func(ctx context.Context, f *Frame) ([]byte, error)

// ServeConn reads requests from conn and answers each in its own goroutine
// until the connection fails or ctx is cancelled. A malformed frame closes the
// connection; a handler error becomes an error reply.
func ServeConn(ctx context.Context, conn net.Conn, h Handler, log *slog.Logger) {
	ServeConnInline(ctx, conn, h, nil, log)
}

// ServeConnInline is ServeConn, except that a request for which inline
// returns true is answered on the goroutine reading the connection, before
// the next frame is read. That is for requests that finish in microseconds
// and never wait for a peer, a timer or another request: they skip starting
// a goroutine (and growing its stack) and a hand-over between goroutines,
// which on a busy machine each cost a wait for a CPU. Later requests on the
// connection wait for an inline one, so a handler that can block must not
// be inline. A nil inline answers every request in its own goroutine.
func ServeConnInline(ctx context.Context, conn net.Conn, h Handler, inline func(*Frame) bool, log *slog.Logger) {
	ServeConnWith(ctx, conn, h, ServeOptions{Inline: inline}, log)
}

// ServeOptions adjusts how ServeConnWith reads and answers requests.
type ServeOptions struct {
	// Inline, if set, picks the requests answered on the reading goroutine
	// (see ServeConnInline).
	Inline func(*Frame) bool
	// Buffer, if set, is asked for the buffer each request's payload is
	// read into, instead of a fresh allocation: h is the frame header and
	// head the first bytes of the payload (at most PeekSize, fewer if the
	// payload is shorter), which lets it place the payload so that a part
	// of it lands aligned. It returns a buffer of exactly h.Length bytes
	// and release, called once the request is answered (the reply
	// written), after which neither the handler nor the connection touches
	// the buffer; or nil to have the payload allocated. The handler must
	// not keep the payload, or anything aliasing it, past its reply.
	Buffer func(h Header, head []byte) (buf []byte, release func())
}

// PeekSize is the most of a request's payload ServeOptions.Buffer is shown.
const PeekSize = 512

// ServeConnWith is ServeConn with options.
func ServeConnWith(ctx context.Context, conn net.Conn, h Handler, opts ServeOptions, log *slog.Logger) {
	inline := opts.Inline
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { <-ctx.Done(); _ = conn.Close() }()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	br := bufio.NewReaderSize(conn, 256<<10)
	bw := bufio.NewWriterSize(conn, 256<<10)
	var wmu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	answer := func(f *Frame, release func()) {
		if release != nil {
			defer release()
		}
		out, err := h(ctx, f)
		rf := &Frame{Type: f.Type, ID: f.ID, Flags: FlagReply, Payload: out}
		if err != nil {
			var e Enc
			NewErrorReply(err).Encode(&e)
			rf.Flags |= FlagError
			rf.Payload = e.B
		}
		wmu.Lock()
		defer wmu.Unlock()
		if err := WriteFrame(bw, rf); err != nil {
			cancel()
			return
		}
		if err := bw.Flush(); err != nil {
			cancel()
		}
	}
	for {
		f, release, err := readRequest(br, opts.Buffer)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				log.Debug("dfs connection closed", "peer", conn.RemoteAddr().String(), "err", err)
			}
			return
		}
		if f.IsReply() {
			if release != nil {
				release()
			}
			log.Debug("dfs peer sent a reply as a request", "peer", conn.RemoteAddr().String(), "type", f.Type.String())
			return
		}
		if inline != nil && inline(f) {
			answer(f, release)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			answer(f, release)
		}()
	}
}

// readRequest reads one frame from br, its payload into the buffer that
// buffer gives (allocated if buffer is nil or gives none); release, if not
// nil, gives that buffer back.
func readRequest(br *bufio.Reader, buffer func(Header, []byte) ([]byte, func())) (*Frame, func(), error) {
	if buffer == nil {
		f, err := ReadFrame(br)
		return f, nil, err
	}
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(br, hb[:]); err != nil {
		return nil, nil, err
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return nil, nil, err
	}
	f := &Frame{Type: h.Type, Flags: h.Flags, ID: h.ID}
	var release func()
	if h.Length > 0 {
		head, err := br.Peek(min(int(h.Length), PeekSize))
		if err != nil {
			return nil, nil, fmt.Errorf("read %s payload of %d bytes: %w", h.Type, h.Length, err)
		}
		f.Payload, release = buffer(h, head)
	}
	if len(f.Payload) != int(h.Length) {
		if release != nil {
			release()
		}
		f.Payload, release = make([]byte, h.Length), nil
	}
	if _, err := io.ReadFull(br, f.Payload); err != nil {
		if release != nil {
			release()
		}
		return nil, nil, fmt.Errorf("read %s payload of %d bytes: %w", h.Type, h.Length, err)
	}
	return f, release, nil
}

// LocalAddr returns the local address of the connection.
func (c *Client) LocalAddr() net.Addr { return c.conn.LocalAddr() }
