package initiator

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// CHAP is a CHAP name and secret.
type CHAP struct {
	User   string
	Secret string
}

// Options describe one session.
type Options struct {
	// Portal is the target portal, HOST:PORT (port 3260 when missing).
	Portal string
	// TargetName is the IQN to log in to; empty for a discovery session.
	TargetName string
	// InitiatorName is this initiator's IQN.
	InitiatorName string
	// CHAP, when set, authenticates this initiator to the target; MutualCHAP, when
	// set too, is what the target must answer with.
	CHAP       *CHAP
	MutualCHAP *CHAP
	// HeaderDigest and DataDigest ask for CRC32C digests.
	HeaderDigest bool
	DataDigest   bool
	// LoginTimeout bounds connecting and logging in (default 15 s).
	LoginTimeout time.Duration
	// NopInterval is how long the connection may stay silent before a NOP-Out ping;
	// NopTimeout how long a ping may go unanswered before the session is failed
	// (defaults 5 s and 10 s, iscsid's noop_out_interval and noop_out_timeout).
	NopInterval time.Duration
	NopTimeout  time.Duration
	// ReplacementTimeout is how long a Client holds commands after its connection
	// drops, waiting to log in again, before failing them (default 15 s, iscsid's
	// node.session.timeo.replacement_timeout). Negative: fail them at once, for a
	// multipath layer that sends them down another path instead.
	ReplacementTimeout time.Duration
	Logger             *slog.Logger
	// DialContext opens the TCP connection to the portal (default: net.Dialer's);
	// tests inject a connection that fails or stalls on demand.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// DefaultInitiatorName is used when Options.InitiatorName is empty.
const DefaultInitiatorName = "iqn.2026-11.org.rampart:initiator"

func (o *Options) defaults() {
	if o.InitiatorName == "" {
		o.InitiatorName = DefaultInitiatorName
	}
	if o.LoginTimeout <= 0 {
		o.LoginTimeout = 15 * time.Second
	}
	if o.NopInterval <= 0 {
		o.NopInterval = 5 * time.Second
	}
	if o.NopTimeout <= 0 {
		o.NopTimeout = 10 * time.Second
	}
	if o.ReplacementTimeout == 0 {
		o.ReplacementTimeout = 15 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DialContext == nil {
		var d net.Dialer
		o.DialContext = d.DialContext
	}
}

// Errors of the initiator.
var (
	// ErrSessionFailed is the error of every command of a session whose connection
	// was lost, timed out or was closed.
	ErrSessionFailed = errors.New("initiator: session failed")
	// ErrLogin is the error of a login the target refused (the status says why).
	ErrLogin = errors.New("initiator: login refused")
)

// LoginError is a login refused by the target, with its status class and detail.
type LoginError struct {
	Class, Detail byte
}

func (e *LoginError) Error() string {
	return "login refused: " + loginStatusText(e.Class, e.Detail)
}

func (e *LoginError) Unwrap() error { return ErrLogin }

// Status is class<<8 | detail, e.g. 0x0201 for an authorization failure.
func (e *LoginError) Status() uint16 { return uint16(e.Class)<<8 | uint16(e.Detail) }

func loginStatusText(class, detail byte) string {
	switch uint16(class)<<8 | uint16(detail) {
	case 0x0101, 0x0102:
		return "target moved (0x010" + string('0'+detail) + ")"
	case 0x0200:
		return "initiator error (0x0200)"
	case 0x0201:
		return "authentication or authorization failure (0x0201)"
	case 0x0202:
		return "authorization failure (0x0202)"
	case 0x0203:
		return "target not found (0x0203)"
	case 0x0204:
		return "target removed (0x0204)"
	case 0x0205:
		return "unsupported version (0x0205)"
	case 0x0206:
		return "too many connections (0x0206)"
	case 0x0207:
		return "missing parameter (0x0207)"
	case 0x0300:
		return "target error (0x0300)"
	case 0x0301:
		return "service unavailable (0x0301)"
	case 0x0302:
		return "out of resources (0x0302)"
	}
	const hexd = "0123456789abcdef"
	return "status 0x" + string([]byte{hexd[class>>4], hexd[class&15], hexd[detail>>4], hexd[detail&15]})
}
