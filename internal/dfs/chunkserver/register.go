package chunkserver

import (
	"context"
	"errors"
	"fmt"
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
	b, err := c.Call(ctx, proto.MsgRegister, e.B)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.masterC, s.addr = c, addr
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.masterC == c {
			s.masterC = nil
		}
		s.mu.Unlock()
	}()
	s.deleteListed(b)
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
		b, err := c.Call(ctx, proto.MsgHeartbeat, e.B)
		if err != nil {
			return err
		}
		s.deleteListed(b)
	}
}

// deleteListed deletes the copies the master listed in its reply to a
// registration or heartbeat: stale versions and chunks no file uses.
func (s *Server) deleteListed(reply []byte) {
	var l proto.ChunkList
	if err := l.Decode(reply); err != nil {
		s.log.Warn("bad delete list from the master", "err", err)
		return
	}
	deleted := 0
	for _, c := range l.Chunks {
		done, err := s.store.DeleteStale(c.ID, c.Version)
		if err != nil {
			s.log.Warn("deleting a stale chunk failed", "chunk", fmt.Sprintf("%016x", c.ID), "err", err)
		} else if done {
			deleted++
		}
	}
	// One line per list, not per chunk: unlinking many files is routine,
	// and a log line per copy cost 5 % of the server's CPU in an unlink loop.
	if deleted > 0 {
		s.log.Info("chunks deleted as the master listed", "n", deleted, "listed", len(l.Chunks))
	}
}

// reportBad tells the master that a copy failed its CRC check; if the
// master has another good copy it answers drop, and the bad one is deleted
// here (the master re-replicates from a good copy).
func (s *Server) reportBad(ctx context.Context, be *BlockError) {
	s.mu.Lock()
	c, addr := s.masterC, s.addr
	s.mu.Unlock()
	id := fmt.Sprintf("%016x", be.ID)
	s.log.Warn("bad block", "chunk", id, "version", be.Version, "block", be.Block)
	if c == nil {
		return // no master now: the scrub or the next read reports it again
	}
	var e proto.Enc
	(&proto.BadChunk{Addr: addr, ID: be.ID, Version: be.Version, Block: uint32(be.Block)}).Encode(&e)
	b, err := c.Call(ctx, proto.MsgBadChunk, e.B)
	if err != nil {
		s.log.Warn("reporting a bad block failed", "chunk", id, "err", err)
		return
	}
	if len(b) == 1 && b[0] == 1 {
		if err := s.store.Delete(be.ID, be.Version); err != nil && !errors.Is(err, ErrNoChunk) {
			s.log.Warn("deleting a bad copy failed", "chunk", id, "err", err)
			return
		}
		s.log.Info("bad copy deleted; the master re-replicates it", "chunk", id)
	}
}
