package initiator

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultNodeDir is where node records are kept, as open-iscsi keeps them in
// /etc/iscsi/nodes.
const DefaultNodeDir = "/etc/rampart/iscsi/nodes"

// Node is a node record: one target reached through one portal, and how to log in
// there. `rampart iscsi discover` writes one per portal a target lists (iscsiadm -m
// discovery); `rampart iscsi login` reads them (iscsiadm -m node --login).
type Node struct {
	Target     string
	Portal     string // HOST:PORT
	TPGT       uint16
	Startup    string // manual or automatic
	CHAP       *CHAP
	MutualCHAP *CHAP
	// Timeouts and digests, iscsid.conf's keys.
	ReplacementTimeout time.Duration
	NopInterval        time.Duration
	NopTimeout         time.Duration
	HeaderDigest       bool
	DataDigest         bool
	// DiscoveryAddress is the portal SendTargets was asked at, if any.
	DiscoveryAddress string
}

// nodeRecordVersion is written in the BEGIN RECORD line.
const nodeRecordVersion = "rampart-1"

// Limits of a node record.
const maxNodeRecord = 64 << 10

// NewNode is a record with iscsid.conf's defaults (replacement timeout 120 s in
// iscsid.conf; the seed's multipath setup lowers it to 15 s and so do we, with NOP-Out
// every 5 s and a 10 s timeout, as the seed sets them).
func NewNode(target, portal string, tpgt uint16) Node {
	return Node{Target: target, Portal: withDefaultPort(portal), TPGT: tpgt, Startup: "manual",
		ReplacementTimeout: 15 * time.Second, NopInterval: 5 * time.Second, NopTimeout: 10 * time.Second}
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

func digest(on bool) string {
	if on {
		return "CRC32C"
	}
	return "None"
}

// Marshal writes the record in open-iscsi's "key = value" form.
func (n Node) Marshal() []byte {
	host, port, _ := net.SplitHostPort(n.Portal)
	var b bytes.Buffer
	kv := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, v) }
	fmt.Fprintf(&b, "# BEGIN RECORD %s\n", nodeRecordVersion)
	kv("node.name", n.Target)
	kv("node.tpgt", strconv.Itoa(int(n.TPGT)))
	kv("node.startup", n.Startup)
	kv("node.conn[0].address", host)
	kv("node.conn[0].port", port)
	if n.DiscoveryAddress != "" {
		kv("node.discovery_address", n.DiscoveryAddress)
	}
	if n.CHAP != nil {
		kv("node.session.auth.authmethod", "CHAP")
		kv("node.session.auth.username", n.CHAP.User)
		kv("node.session.auth.password", n.CHAP.Secret)
		if n.MutualCHAP != nil {
			kv("node.session.auth.username_in", n.MutualCHAP.User)
			kv("node.session.auth.password_in", n.MutualCHAP.Secret)
		}
	} else {
		kv("node.session.auth.authmethod", "None")
	}
	kv("node.session.timeo.replacement_timeout", seconds(n.ReplacementTimeout))
	kv("node.conn[0].timeo.noop_out_interval", seconds(n.NopInterval))
	kv("node.conn[0].timeo.noop_out_timeout", seconds(n.NopTimeout))
	kv("node.conn[0].iscsi.HeaderDigest", digest(n.HeaderDigest))
	kv("node.conn[0].iscsi.DataDigest", digest(n.DataDigest))
	b.WriteString("# END RECORD\n")
	return b.Bytes()
}

// ParseNode reads a node record. It takes rampart's records and open-iscsi's (whose
// BEGIN RECORD line names an open-iscsi version such as 2.1.8); other versions are
// refused, unknown keys ignored.
func ParseNode(b []byte) (Node, error) {
	if len(b) > maxNodeRecord {
		return Node{}, fmt.Errorf("node record: %d bytes, more than %d", len(b), maxNodeRecord)
	}
	var n Node
	var host, port, user, pass, userIn, passIn, method string
	sawBegin := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		l := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(l, "# BEGIN RECORD"); ok {
			v = strings.TrimSpace(v)
			if v != nodeRecordVersion && (v == "" || v[0] < '0' || v[0] > '9') {
				return Node{}, fmt.Errorf("node record: version %q: want %s or an open-iscsi record", v, nodeRecordVersion)
			}
			sawBegin = true
			continue
		}
		if l == "" || l[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return Node{}, fmt.Errorf("node record line %d: want key = value", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		dur := func() (time.Duration, error) {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1e6 {
				return 0, fmt.Errorf("node record line %d: %s = %q: want seconds", line, k, v)
			}
			return time.Duration(f * float64(time.Second)), nil
		}
		var err error
		switch k {
		case "node.name":
			n.Target = v
		case "node.tpgt":
			t, perr := strconv.ParseInt(v, 10, 32)
			if perr != nil || t < -1 || t > 65535 {
				return Node{}, fmt.Errorf("node record line %d: node.tpgt %q", line, v)
			}
			n.TPGT = uint16(max(t, 0))
		case "node.startup":
			n.Startup = v
		case "node.conn[0].address":
			host = v
		case "node.conn[0].port":
			port = v
		case "node.discovery_address":
			n.DiscoveryAddress = v
		case "node.session.auth.authmethod":
			method = v
		case "node.session.auth.username":
			user = v
		case "node.session.auth.password":
			pass = v
		case "node.session.auth.username_in":
			userIn = v
		case "node.session.auth.password_in":
			passIn = v
		case "node.session.timeo.replacement_timeout":
			n.ReplacementTimeout, err = dur()
		case "node.conn[0].timeo.noop_out_interval":
			n.NopInterval, err = dur()
		case "node.conn[0].timeo.noop_out_timeout":
			n.NopTimeout, err = dur()
		case "node.conn[0].iscsi.HeaderDigest":
			n.HeaderDigest = strings.HasPrefix(v, "CRC32C")
		case "node.conn[0].iscsi.DataDigest":
			n.DataDigest = strings.HasPrefix(v, "CRC32C")
		}
		if err != nil {
			return Node{}, err
		}
	}
	if err := sc.Err(); err != nil {
		return Node{}, fmt.Errorf("node record: %w", err)
	}
	if !sawBegin {
		return Node{}, errors.New("node record: no BEGIN RECORD line")
	}
	if n.Target == "" || host == "" {
		return Node{}, errors.New("node record: node.name or node.conn[0].address missing")
	}
	if port == "" {
		port = "3260"
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return Node{}, fmt.Errorf("node record: port %q", port)
	}
	n.Portal = net.JoinHostPort(trimBrackets(host), port)
	if method == "CHAP" {
		n.CHAP = &CHAP{User: user, Secret: pass}
		if userIn != "" {
			n.MutualCHAP = &CHAP{User: userIn, Secret: passIn}
		}
	}
	return n, nil
}

// Options are the session options of the record over base (initiator name, logger).
func (n Node) Options(base Options) Options {
	o := base
	o.Portal, o.TargetName = n.Portal, n.Target
	o.CHAP, o.MutualCHAP = n.CHAP, n.MutualCHAP
	o.HeaderDigest, o.DataDigest = n.HeaderDigest, n.DataDigest
	if n.ReplacementTimeout > 0 {
		o.ReplacementTimeout = n.ReplacementTimeout
	}
	if n.NopInterval > 0 {
		o.NopInterval = n.NopInterval
	}
	if n.NopTimeout > 0 {
		o.NopTimeout = n.NopTimeout
	}
	return o
}

// nodePath is DIR/TARGET/HOST,PORT,TPGT/default, open-iscsi's layout.
func nodePath(dir string, n Node) (string, error) {
	host, port, err := net.SplitHostPort(n.Portal)
	if err != nil {
		return "", fmt.Errorf("node record: portal %q: %w", n.Portal, err)
	}
	for _, part := range []string{n.Target, host} {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, "/\x00") {
			return "", fmt.Errorf("node record: %q cannot name a directory", part)
		}
	}
	return filepath.Join(dir, n.Target, fmt.Sprintf("%s,%s,%d", host, port, n.TPGT), "default"), nil
}

// WriteNode saves a record atomically (mode 0600: it may hold a CHAP secret).
func WriteNode(dir string, n Node) error {
	p, err := nodePath(dir, n)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, n.Marshal(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// ReadNodes loads every record under dir, sorted by target and portal. A record that
// cannot be read is an error naming its file.
func ReadNodes(dir string) ([]Node, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*", "*", "default"))
	if err != nil {
		return nil, err
	}
	var out []Node
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		n, err := ParseNode(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Target != out[j].Target {
			return out[i].Target < out[j].Target
		}
		return out[i].Portal < out[j].Portal
	})
	return out, nil
}

// DeleteNode removes a record.
func DeleteNode(dir string, n Node) error {
	p, err := nodePath(dir, n)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return err
	}
	os.Remove(filepath.Dir(p))
	os.Remove(filepath.Dir(filepath.Dir(p)))
	return nil
}
