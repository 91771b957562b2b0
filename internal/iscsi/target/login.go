package target

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"

	"github.com/rampart-storage/rampart/internal/iscsi"
)

// Login status class/detail codes (RFC 7143 section 11.13.5).
const (
	statusSuccess          = 0x0000
	statusInitiatorError   = 0x0200
	statusAuthFailure      = 0x0201
	statusNotFound         = 0x0203
	statusUnsupportedVer   = 0x0205
	statusTooManyConns     = 0x0206
	statusMissingParameter = 0x0207
	statusSessionNotExist  = 0x020a
	statusTargetError      = 0x0300
)

// loginError ends a login with a status code.
type loginError struct {
	status uint16
	msg    string
}

func (e *loginError) Error() string { return fmt.Sprintf("login status 0x%04x: %s", e.status, e.msg) }

func failLogin(status uint16, format string, args ...any) error {
	return &loginError{status: status, msg: fmt.Sprintf(format, args...)}
}

// Login stages.
const (
	stageSecurity    = 0
	stageOperational = 1
	stageFullFeature = 3
)

// login is the state of one connection's login phase.
type login struct {
	c     *conn
	first bool

	isid    [6]byte
	tsih    uint16
	itt     uint32
	cmdSN   uint32
	statSN  uint32
	initiat string
	target  string
	discov  bool
	ts      *targetState

	chap, mutual *CHAP
	authDone     bool
	chapMethod   bool
	chapID       byte
	chapC        []byte
	sentTPGT     bool
	declared     bool
	params       iscsi.Params
	text         []byte
	finalOut     []iscsi.KV // keys of the response that enters full feature phase
}

// doLogin runs the login phase on c and returns the session that reached full feature
// phase. A failed login has already been answered with its status.
func (s *Server) doLogin(c *conn) (*session, error) {
	l := &login{c: c, first: true, params: iscsi.DefaultParams()}
	var req iscsi.PDU
	for {
		if err := iscsi.ReadPDU(c.br, &req, iscsi.Digests{}, 8192); err != nil {
			return nil, fmt.Errorf("read login request: %w", err)
		}
		if req.Opcode() != iscsi.OpLogin {
			return nil, fmt.Errorf("%s PDU during login: %w", req.Opcode(), errProtocol)
		}
		done, err := s.loginStep(l, &req)
		if err != nil {
			return nil, l.fail(&req, err)
		}
		if done {
			break
		}
	}
	ss := &session{
		srv:        s,
		discovery:  l.discov,
		targetIQN:  l.target,
		initiator:  l.initiat,
		isid:       l.isid,
		loginCmdSN: l.cmdSN,
		portal:     c.portal,
		params:     l.params,
		conn:       c,
		done:       make(chan struct{}),
	}
	// Register before answering, so that an Apply racing with the initiator's first
	// command already sees the session; the reinstated session is closed here.
	if err := s.register(ss); err != nil {
		return nil, l.fail(&req, err)
	}
	l.tsih = ss.tsih
	if err := l.respond(&req, statusSuccess, l.finalOut, true, stageFullFeature); err != nil {
		s.unregister(ss)
		close(ss.done)
		return nil, err
	}
	c.statSN = l.statSN
	c.sess = ss
	return ss, nil
}

// fail answers a login error with its status, when it has one.
func (l *login) fail(req *iscsi.PDU, err error) error {
	var le *loginError
	if errors.As(err, &le) {
		if werr := l.respond(req, le.status, nil, false, 0); werr != nil {
			return errors.Join(err, werr)
		}
	}
	return err
}

var errProtocol = errors.New("target: iSCSI protocol error")

// loginStep handles one Login request PDU; it reports whether full feature phase begins.
func (s *Server) loginStep(l *login, req *iscsi.PDU) (bool, error) {
	flags := req.Flags()
	transit, cont := flags&iscsi.FlagTransit != 0, flags&iscsi.FlagContinue != 0
	csg, nsg := (flags>>2)&3, flags&3
	if l.first {
		copy(l.isid[:], req.BHS[8:14])
		l.tsih = req.U16(14)
		l.itt = req.ITT()
		l.cmdSN = req.U32(24)
		l.statSN = req.U32(28)
		if req.BHS[3] > 0 { // Version-min
			return false, failLogin(statusUnsupportedVer, "version-min %d", req.BHS[3])
		}
	}
	l.itt = req.ITT()
	l.text = append(l.text, req.Data...)
	if len(l.text) > iscsi.MaxTextLen {
		return false, failLogin(statusInitiatorError, "login text longer than %d bytes", iscsi.MaxTextLen)
	}
	if cont {
		if transit {
			return false, failLogin(statusInitiatorError, "login request with both T and C bits")
		}
		return false, l.respond(req, statusSuccess, nil, false, 0)
	}
	kvs, err := iscsi.ParseText(l.text)
	l.text = l.text[:0]
	if err != nil {
		return false, failLogin(statusInitiatorError, "%v", err)
	}
	l.c.log.Debug("login request", "csg", csg, "nsg", nsg, "transit", transit, "keys", kvs)
	var out []iscsi.KV
	if l.first {
		if err := s.loginFirst(l, kvs); err != nil {
			return false, err
		}
		l.first = false
		if !l.discov && !l.sentTPGT {
			tag := l.ts.ports[l.c.portal].GroupID
			out = append(out, iscsi.KV{Key: "TargetPortalGroupTag", Value: fmt.Sprint(tag)})
			l.sentTPGT = true
		}
	}
	switch csg {
	case stageSecurity:
		r, err := l.security(kvs)
		if err != nil {
			return false, err
		}
		out = append(out, r...)
	case stageOperational:
		if l.chap != nil && !l.authDone {
			return false, failLogin(statusAuthFailure, "initiator %s skipped CHAP", l.initiat)
		}
		l.authDone = true
		out = append(out, iscsi.Negotiate(kvs, &l.params, s.limits(), l.discov)...)
		if !l.declared {
			lim := s.limits()
			l.params.OurMaxRecvDataSegmentLength = lim.MaxRecvDataSegmentLength
			out = append(out, iscsi.KV{Key: "MaxRecvDataSegmentLength", Value: fmt.Sprint(lim.MaxRecvDataSegmentLength)})
			l.declared = true
		}
	default:
		return false, failLogin(statusInitiatorError, "login in stage %d", csg)
	}
	if transit {
		if nsg <= csg || nsg == 2 {
			return false, failLogin(statusInitiatorError, "transit from stage %d to %d", csg, nsg)
		}
		if !l.authDone {
			transit = false // not ready to leave the security stage yet
		}
	}
	if transit && nsg == stageFullFeature {
		if l.tsih != 0 {
			return false, failLogin(statusSessionNotExist, "adding a connection to session %d", l.tsih)
		}
		l.finalOut = out
		return true, nil
	}
	return false, l.respond(req, statusSuccess, out, transit, nsg)
}

func (s *Server) limits() iscsi.Limits { return iscsi.DefaultTargetLimits() }

// loginFirst checks the names of the first login request and finds the target.
func (s *Server) loginFirst(l *login, kvs []iscsi.KV) error {
	name, ok := iscsi.Get(kvs, "InitiatorName")
	if !ok || name == "" {
		return failLogin(statusMissingParameter, "no InitiatorName")
	}
	l.initiat = name
	switch st, _ := iscsi.Get(kvs, "SessionType"); st {
	case "", "Normal":
	case "Discovery":
		l.discov = true
	default:
		return failLogin(statusInitiatorError, "SessionType %q", st)
	}
	if l.tsih != 0 {
		if s.sessionByTSIH(l.tsih) {
			return failLogin(statusTooManyConns, "session %d has its connection (MaxConnections=1)", l.tsih)
		}
		return failLogin(statusSessionNotExist, "no session %d", l.tsih)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.discov {
		l.chap, l.mutual = s.cfg.DiscoveryCHAP, s.cfg.MutualDiscoveryCHAP
		return nil
	}
	tn, ok := iscsi.Get(kvs, "TargetName")
	if !ok || tn == "" {
		return failLogin(statusMissingParameter, "no TargetName in a normal session")
	}
	ts := s.targets[tn]
	if ts == nil {
		return failLogin(statusNotFound, "no target %s", tn)
	}
	if _, ok := ts.ports[l.c.portal]; !ok {
		return failLogin(statusNotFound, "target %s is not served on portal %s", tn, l.c.portal)
	}
	if !ts.admits(name) {
		return failLogin(statusAuthFailure, "initiator %s has no ACL on target %s", name, tn)
	}
	l.target, l.ts = tn, ts
	l.chap, l.mutual = ts.cfg.CHAP, ts.cfg.MutualCHAP
	if a := ts.acl(name); a != nil && a.CHAP != nil {
		l.chap, l.mutual = a.CHAP, a.MutualCHAP
	}
	return nil
}

// security handles the keys of the security stage: AuthMethod and the CHAP exchange.
func (l *login) security(kvs []iscsi.KV) ([]iscsi.KV, error) {
	var out, rest []iscsi.KV
	var chapN, chapR, chapI, chapC string
	var haveR, haveI, haveC bool
	for _, kv := range kvs {
		switch kv.Key {
		case "AuthMethod":
			methods := iscsi.SplitList(kv.Value)
			switch {
			case l.chap != nil && slices.Contains(methods, "CHAP"):
				l.chapMethod = true
				out = append(out, iscsi.KV{Key: "AuthMethod", Value: "CHAP"})
			case l.chap != nil:
				return nil, failLogin(statusAuthFailure, "initiator %s offers AuthMethod=%s, CHAP required", l.initiat, kv.Value)
			case slices.Contains(methods, "None"):
				l.authDone = true
				out = append(out, iscsi.KV{Key: "AuthMethod", Value: "None"})
			default:
				return nil, failLogin(statusAuthFailure, "initiator %s offers AuthMethod=%s, no CHAP configured", l.initiat, kv.Value)
			}
		case "CHAP_A":
			if !l.chapMethod {
				return nil, failLogin(statusInitiatorError, "CHAP_A before AuthMethod=CHAP")
			}
			if !slices.Contains(iscsi.SplitList(kv.Value), iscsi.CHAPAlgorithmMD5) {
				return nil, failLogin(statusAuthFailure, "CHAP_A=%s, only 5 (MD5) supported", kv.Value)
			}
			id, ch, err := iscsi.NewChallenge()
			if err != nil {
				return nil, failLogin(statusTargetError, "%v", err)
			}
			l.chapID, l.chapC = id, ch
			out = append(out, iscsi.KV{Key: "CHAP_A", Value: iscsi.CHAPAlgorithmMD5},
				iscsi.KV{Key: "CHAP_I", Value: fmt.Sprint(id)},
				iscsi.KV{Key: "CHAP_C", Value: iscsi.EncodeBinary(ch)})
		case "CHAP_N":
			chapN = kv.Value
		case "CHAP_R":
			chapR, haveR = kv.Value, true
		case "CHAP_I":
			chapI, haveI = kv.Value, true
		case "CHAP_C":
			chapC, haveC = kv.Value, true
		default:
			rest = append(rest, kv)
		}
	}
	if haveR {
		if l.chapC == nil {
			return nil, failLogin(statusInitiatorError, "CHAP_R before a challenge")
		}
		resp, err := iscsi.DecodeBinary(chapR)
		if err != nil {
			return nil, failLogin(statusAuthFailure, "CHAP_R: %v", err)
		}
		nameOK := subtle.ConstantTimeCompare([]byte(chapN), []byte(l.chap.User)) == 1
		if !iscsi.CHAPVerify(l.chapID, l.chap.Secret, l.chapC, resp) || !nameOK {
			return nil, failLogin(statusAuthFailure, "initiator %s: wrong CHAP name or response", l.initiat)
		}
		if haveI || haveC {
			if l.mutual == nil {
				return nil, failLogin(statusAuthFailure, "initiator %s asks mutual CHAP, none configured", l.initiat)
			}
			var id int
			if _, err := fmt.Sscan(chapI, &id); err != nil || id < 0 || id > 255 || !haveC {
				return nil, failLogin(statusInitiatorError, "bad mutual CHAP_I %q", chapI)
			}
			ch, err := iscsi.DecodeBinary(chapC)
			if err != nil || len(ch) == 0 || len(ch) > 1024 || subtle.ConstantTimeCompare(ch, l.chapC) == 1 {
				return nil, failLogin(statusAuthFailure, "bad mutual CHAP_C")
			}
			out = append(out, iscsi.KV{Key: "CHAP_N", Value: l.mutual.User},
				iscsi.KV{Key: "CHAP_R", Value: iscsi.EncodeBinary(iscsi.CHAPResponse(byte(id), l.mutual.Secret, ch))})
		}
		l.authDone = true
	}
	// Any other key in the security stage: names are declarations, the rest is answered.
	out = append(out, iscsi.Negotiate(rest, &l.params, l.c.srv.limits(), l.discov)...)
	return out, nil
}

// respond sends a Login Response.
func (l *login) respond(req *iscsi.PDU, status uint16, kvs []iscsi.KV, transit bool, nsg byte) error {
	c := l.c
	var p iscsi.PDU
	p.BHS[0] = byte(iscsi.OpLoginResp)
	csg := (req.Flags() >> 2) & 3
	if status == statusSuccess {
		p.BHS[1] = csg << 2
		if transit {
			p.BHS[1] |= iscsi.FlagTransit | nsg
		}
	}
	copy(p.BHS[8:14], l.isid[:])
	if transit && nsg == stageFullFeature {
		p.SetU16(14, l.tsih)
	}
	p.SetU32(16, req.ITT())
	p.SetU32(24, l.statSN)
	l.statSN++
	p.SetU32(28, l.cmdSN)
	p.SetU32(32, l.cmdSN+uint32(c.srv.opts.QueueDepth)-1)
	p.BHS[36], p.BHS[37] = byte(status>>8), byte(status)
	p.Data = iscsi.AppendText(nil, kvs)
	if err := iscsi.WritePDU(c.bw, &p, iscsi.Digests{}); err != nil {
		return fmt.Errorf("write login response: %w", err)
	}
	return c.bw.Flush()
}
