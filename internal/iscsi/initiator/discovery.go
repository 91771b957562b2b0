package initiator

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/rampart-storage/rampart/internal/iscsi"
)

// DiscoveredTarget is one target named by SendTargets, with its portals.
type DiscoveredTarget struct {
	Name    string
	Portals []Portal
}

// Portal is a target portal address and its portal group tag.
type Portal struct {
	Addr string // HOST:PORT
	TPGT uint16
}

// Discover opens a discovery session to portal and asks SendTargets=All.
func Discover(ctx context.Context, o Options) ([]DiscoveredTarget, error) {
	o.TargetName = ""
	s, err := Dial(ctx, o)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	kvs, err := s.text(ctx, []iscsi.KV{{Key: "SendTargets", Value: "All"}})
	if err != nil {
		return nil, fmt.Errorf("SendTargets at %s: %w", o.Portal, err)
	}
	return parseSendTargets(kvs, withDefaultPort(o.Portal))
}

// parseSendTargets turns TargetName/TargetAddress pairs into targets. A target listed
// without an address is reachable through the portal that was asked.
func parseSendTargets(kvs []iscsi.KV, asked string) ([]DiscoveredTarget, error) {
	var out []DiscoveredTarget
	for _, kv := range kvs {
		switch kv.Key {
		case "TargetName":
			out = append(out, DiscoveredTarget{Name: kv.Value})
		case "TargetAddress":
			if len(out) == 0 {
				return nil, fmt.Errorf("TargetAddress %q before any TargetName", kv.Value)
			}
			addr, tag, _ := strings.Cut(kv.Value, ",")
			t, _ := strconv.ParseUint(tag, 10, 16)
			out[len(out)-1].Portals = append(out[len(out)-1].Portals, Portal{Addr: withDefaultPort(addr), TPGT: uint16(t)})
		}
	}
	for i := range out {
		if len(out[i].Portals) == 0 {
			out[i].Portals = []Portal{{Addr: asked}}
		}
	}
	return out, nil
}

// text runs one Text request/response exchange (following continuations).
func (s *Session) text(ctx context.Context, kvs []iscsi.KV) ([]iscsi.KV, error) {
	t := &task{done: make(chan struct{}), dataIn: nil}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil, s.err
	}
	t.itt = s.nextITT
	s.nextITT++
	s.mu.Unlock()
	ttt := uint32(iscsi.ReservedTag)
	data := iscsi.AppendText(nil, kvs)
	var all []byte
	for {
		var p iscsi.PDU
		p.BHS[0] = byte(iscsi.OpText)
		p.BHS[1] = iscsi.FlagFinal
		p.SetU32(16, t.itt)
		p.SetU32(20, ttt)
		s.mu.Lock()
		p.SetU32(24, s.cmdSN)
		s.cmdSN++
		p.SetU32(28, s.expSN)
		s.textWait = make(chan *iscsi.PDU, 1)
		wait := s.textWait
		s.mu.Unlock()
		p.Data = data
		data = nil
		if err := s.send(&p); err != nil {
			return nil, err
		}
		select {
		case r := <-wait:
			all = append(all, r.Data...)
			if len(all) > iscsi.MaxTextLen {
				return nil, fmt.Errorf("text response longer than %d bytes", iscsi.MaxTextLen)
			}
			if r.Flags()&iscsi.FlagContinue == 0 {
				return iscsi.ParseText(all)
			}
			ttt = r.U32(20)
		case <-s.done:
			return nil, s.Err()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
