package target

import (
	"fmt"
	"net"
	"strconv"

	"github.com/rampart-storage/rampart/internal/iscsi"
)

// sendTargets answers SendTargets=value on c: "All" lists every target the initiator
// may log in to (in a discovery session; in a normal session only its own target),
// "" the session's target, an IQN that target. Each target comes with every portal
// of every portal group as TargetAddress=ADDR:PORT,TPGT.
func (s *Server) sendTargets(c *conn, value string) []iscsi.KV {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	switch {
	case value == "All" && c.sess.discovery:
		for _, t := range s.cfg.Targets {
			names = append(names, t.IQN)
		}
	case value == "All" || value == "":
		if c.sess.discovery {
			return nil
		}
		names = []string{c.sess.targetIQN}
	default:
		names = []string{value}
	}
	local, _ := c.nc.LocalAddr().(*net.TCPAddr)
	var out []iscsi.KV
	for _, name := range names {
		ts := s.targets[name]
		if ts == nil || !ts.admits(c.sess.initiator) {
			continue
		}
		out = append(out, iscsi.KV{Key: "TargetName", Value: name})
		for _, pg := range ts.cfg.PortalGroups {
			for _, p := range pg.Portals {
				addr := s.portalAddress(p, local)
				out = append(out, iscsi.KV{Key: "TargetAddress", Value: fmt.Sprintf("%s,%d", addr, pg.Tag)})
			}
		}
	}
	return out
}

// portalAddress is the address initiators reach portal p at: the bound port for ":0"
// and the connection's local address for a wildcard host.
func (s *Server) portalAddress(p string, local *net.TCPAddr) string {
	host, port, err := net.SplitHostPort(p)
	if err != nil {
		return p
	}
	if pl := s.portals[p]; pl != nil {
		if a, ok := pl.ln.Addr().(*net.TCPAddr); ok {
			port = strconv.Itoa(a.Port)
		}
	}
	if ip := net.ParseIP(host); (host == "" || ip.IsUnspecified()) && local != nil {
		host = local.IP.String()
	}
	return net.JoinHostPort(host, port)
}
