package initiator

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Session states of a Client, the words iscsiadm -m session -P 3 uses.
const (
	StateLoggedIn = "LOGGED_IN" // a connection is logged in and carries commands
	StateFailed   = "FAILED"    // the connection dropped; logging in again in the background
	StateFree     = "FREE"      // closed (logged out)
)

// Reconnection backoff: the first new login starts at once, later ones wait twice as
// long each time, up to maxReconnectBackoff (iscsid retries about every second or two).
const (
	minReconnectBackoff = 100 * time.Millisecond
	maxReconnectBackoff = 2 * time.Second
)

// Client is a session to one target portal that survives its connection: it logs in,
// and when the connection drops (transport error, NOP-Out timeout, target logout) it
// logs in again in the background, with backoff and the same ISID, so that the target
// reinstates the session (RFC 7143 6.3.5). Commands caught by the drop, and new ones
// meanwhile, wait for the new connection up to Options.ReplacementTimeout after the
// drop and are then sent again on it; past the timeout they fail with ErrSessionFailed
// at once, as open-iscsi fails I/O after node.session.timeo.replacement_timeout, while
// the Client keeps logging in.
//
// Retrying a command on the new connection is what the SCSI layer does after an iSCSI
// session recovery: READ and WRITE are idempotent. A Client is a Commander.
type Client struct {
	o      Options
	isid   [6]byte
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	s        *Session // nil unless logged in
	state    string
	since    time.Time // when state was entered
	failedAt time.Time // when the last connection dropped (or the Client started)
	lastErr  error
	logins   uint64        // successful logins so far
	attempts uint64        // login attempts so far
	changed  chan struct{} // closed and replaced at every state change
}

var _ Commander = (*Client)(nil)

// NewClient starts a Client: it logs in to o.Portal in the background and keeps the
// session up until Close.
func NewClient(ctx context.Context, o Options) *Client {
	o.defaults()
	c := &Client{o: o, isid: newISID(), state: StateFailed, since: time.Now(), failedAt: time.Now(), changed: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.wg.Add(1)
	go c.run()
	return c
}

// Connect starts a Client and waits for its first login; when that fails, the Client
// is closed and the login error returned (a wrong CHAP secret is not retried forever).
func Connect(ctx context.Context, o Options) (*Client, error) {
	c := NewClient(ctx, o)
	for {
		c.mu.Lock()
		logins, attempts, err, ch := c.logins, c.attempts, c.lastErr, c.changed
		c.mu.Unlock()
		if logins > 0 {
			return c, nil
		}
		if attempts > 0 {
			c.Close()
			return nil, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			c.Close()
			return nil, ctx.Err()
		}
	}
}

// setState records a state change and wakes everyone waiting for one; c.mu is held.
func (c *Client) setState(state string) {
	c.state, c.since = state, time.Now()
	close(c.changed)
	c.changed = make(chan struct{})
}

// run logs in, waits for the connection to drop, and logs in again.
func (c *Client) run() {
	defer c.wg.Done()
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			select {
			case <-c.ctx.Done():
			case <-time.After(backoff):
			}
		}
		if c.ctx.Err() != nil {
			break
		}
		s, err := dial(c.ctx, c.o, c.isid)
		c.mu.Lock()
		c.attempts++
		if err != nil {
			c.lastErr = err
			c.setState(StateFailed) // same state; wakes Connect
			c.mu.Unlock()
			c.o.Logger.Debug("login failed, retrying", "portal", c.o.Portal, "target", c.o.TargetName, "in", backoff, "err", err)
			backoff = min(max(2*backoff, minReconnectBackoff), maxReconnectBackoff)
			continue
		}
		c.s, c.lastErr = s, nil
		c.logins++
		c.setState(StateLoggedIn)
		c.mu.Unlock()
		if c.logins > 1 {
			c.o.Logger.Info("session reconnected", "portal", c.o.Portal, "target", c.o.TargetName, "down_for", time.Since(c.failedAt))
		}
		backoff = 0
		select {
		case <-s.Done():
		case <-c.ctx.Done():
		}
		if c.ctx.Err() != nil {
			s.Close() // logs out
			break
		}
		c.mu.Lock()
		c.s, c.failedAt, c.lastErr = nil, time.Now(), s.Err()
		c.setState(StateFailed)
		c.mu.Unlock()
		c.o.Logger.Warn("session failed, logging in again", "portal", c.o.Portal, "target", c.o.TargetName, "err", s.Err())
		s.Close()
		backoff = minReconnectBackoff / 2 // a dropped connection is retried almost at once
	}
	c.mu.Lock()
	c.s = nil
	c.setState(StateFree)
	c.mu.Unlock()
}

// Close logs out and stops reconnecting; waiting commands fail.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}

// Session is the logged-in session now, or nil while reconnecting.
func (c *Client) Session() *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s != nil && c.s.Err() == nil {
		return c.s
	}
	return nil
}

// Logins is how many times the Client has logged in; it changes with every new
// connection, so a user can tell that the session was reinstated.
func (c *Client) Logins() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logins
}

// Changed is closed at the next state change (login, drop, close).
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Portal and TargetName say where the Client logs in.
func (c *Client) Portal() string     { return c.o.Portal }
func (c *Client) TargetName() string { return c.o.TargetName }

// session waits for a logged-in session within the replacement timeout.
func (c *Client) session(ctx context.Context) (*Session, error) {
	for {
		c.mu.Lock()
		s, state, ch, failedAt, lastErr := c.s, c.state, c.changed, c.failedAt, c.lastErr
		c.mu.Unlock()
		if s != nil && s.Err() == nil {
			return s, nil
		}
		if state == StateFree {
			return nil, fmt.Errorf("session to %s at %s: %w: closed", c.o.TargetName, c.o.Portal, ErrSessionFailed)
		}
		if s != nil { // dropped, and run has not noticed yet
			if c.o.ReplacementTimeout < 0 {
				return nil, s.Err()
			}
			failedAt = time.Now()
		}
		left := time.Until(failedAt.Add(c.o.ReplacementTimeout))
		if c.o.ReplacementTimeout < 0 || left <= 0 {
			if lastErr == nil {
				lastErr = errors.New("not logged in")
			}
			return nil, fmt.Errorf("session to %s at %s: %w: not logged in again within the replacement timeout %v: %w",
				c.o.TargetName, c.o.Portal, ErrSessionFailed, max(c.o.ReplacementTimeout, 0), lastErr)
		}
		t := time.NewTimer(left)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

// Execute runs a command on the logged-in session; a command whose connection drops
// is sent again on the next one, within the replacement timeout.
func (c *Client) Execute(ctx context.Context, lun uint64, cdb, dataOut, dataIn []byte) (Result, error) {
	for {
		s, err := c.session(ctx)
		if err != nil {
			return Result{}, err
		}
		r, err := s.Execute(ctx, lun, cdb, dataOut, dataIn)
		if err != nil && errors.Is(err, ErrSessionFailed) && c.o.ReplacementTimeout >= 0 && c.ctx.Err() == nil {
			continue
		}
		return r, err
	}
}

// Unsolicited is the logged-in session's Unsolicited, 0 while reconnecting.
func (c *Client) Unsolicited() int {
	if s := c.Session(); s != nil {
		return s.Unsolicited()
	}
	return 0
}

// SessionStatus is what `rampart iscsi session -P 3` shows of one session.
type SessionStatus struct {
	Target    string    `json:"target"`
	Portal    string    `json:"portal"`
	ISID      string    `json:"isid"`
	TSIH      uint16    `json:"tsih"`
	State     string    `json:"state"`
	Since     time.Time `json:"since"`
	Logins    uint64    `json:"logins"`
	LastError string    `json:"last_error,omitempty"`
	// Negotiated parameters of the current connection (zero while not logged in).
	HeaderDigest             string `json:"header_digest,omitempty"`
	DataDigest               string `json:"data_digest,omitempty"`
	MaxRecvDataSegmentLength uint32 `json:"max_recv_data_segment_length,omitempty"` // what we receive
	MaxXmitDataSegmentLength uint32 `json:"max_xmit_data_segment_length,omitempty"` // what the target receives
	FirstBurstLength         uint32 `json:"first_burst_length,omitempty"`
	MaxBurstLength           uint32 `json:"max_burst_length,omitempty"`
	ImmediateData            bool   `json:"immediate_data"`
	InitialR2T               bool   `json:"initial_r2t"`
	MaxOutstandingR2T        uint32 `json:"max_outstanding_r2t,omitempty"`
	// Timeouts, in seconds as iscsid.conf writes them.
	NopInterval        float64 `json:"noop_out_interval"`
	NopTimeout         float64 `json:"noop_out_timeout"`
	ReplacementTimeout float64 `json:"replacement_timeout"`
	LoginTimeout       float64 `json:"login_timeout"`
}

// Status reports the session now.
func (c *Client) Status() SessionStatus {
	c.mu.Lock()
	st := SessionStatus{
		Target: c.o.TargetName, Portal: withDefaultPort(c.o.Portal), ISID: hex.EncodeToString(c.isid[:]),
		State: c.state, Since: c.since, Logins: c.logins,
		NopInterval: c.o.NopInterval.Seconds(), NopTimeout: c.o.NopTimeout.Seconds(),
		ReplacementTimeout: max(c.o.ReplacementTimeout, 0).Seconds(), LoginTimeout: c.o.LoginTimeout.Seconds(),
	}
	if c.lastErr != nil {
		st.LastError = c.lastErr.Error()
	}
	s := c.s
	c.mu.Unlock()
	if s != nil {
		p := s.Params()
		st.TSIH = s.tsih
		st.HeaderDigest, st.DataDigest = digestName(p.HeaderDigest), digestName(p.DataDigest)
		st.MaxRecvDataSegmentLength, st.MaxXmitDataSegmentLength = p.OurMaxRecvDataSegmentLength, p.MaxRecvDataSegmentLength
		st.FirstBurstLength, st.MaxBurstLength = p.FirstBurstLength, p.MaxBurstLength
		st.ImmediateData, st.InitialR2T, st.MaxOutstandingR2T = p.ImmediateData, p.InitialR2T, p.MaxOutstandingR2T
	}
	return st
}

func digestName(on bool) string {
	if on {
		return "CRC32C"
	}
	return "None"
}
