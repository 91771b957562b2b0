package chunkserver

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// masterLoop keeps this chunkserver registered with the master: it connects,
// reports every chunk it holds, then heartbeats with its capacity; on any
// failure it reconnects after a pause.
func (s *Server) masterLoop(ctx context.Context) {
	every := s.cfg.Heartbeat
	if every == 0 {
		every = 2 * time.Second
	}
	for ctx.Err() == nil {
		err := s.session(ctx, every)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("chunkserver lost the master, reconnecting", "master", s.cfg.Master, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (s *Server) advertise(c *proto.Client) string {
	if s.cfg.Advertise != "" {
		return s.cfg.Advertise
	}
	la := s.ln.Addr().(*net.TCPAddr)
	if !la.IP.IsUnspecified() {
		return la.String()
	}
	host := "127.0.0.1"
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
		host = ta.IP.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(la.Port))
}

func (s *Server) session(ctx context.Context, every time.Duration) error {
	c, err := proto.Dial(ctx, s.cfg.Master)
	if err != nil {
		return err
	}
	defer c.Close()
	addr := s.advertise(c)
	reg := proto.Register{Addr: addr}
	reg.Total, reg.Free = s.store.Space()
	for id, v := range s.store.Chunks() {
		reg.Chunks = append(reg.Chunks, proto.ChunkRef{ID: id, Version: v})
	}
	var e proto.Enc
	reg.Encode(&e)
	if _, err := c.Call(ctx, proto.MsgRegister, e.B); err != nil {
		return err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		hb := proto.Register{Addr: addr}
		hb.Total, hb.Free = s.store.Space()
		e := proto.Enc{}
		hb.Encode(&e)
		if _, err := c.Call(ctx, proto.MsgHeartbeat, e.B); err != nil {
			return err
		}
	}
}
