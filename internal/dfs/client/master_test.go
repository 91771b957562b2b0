package client

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

// TestCallKeepsDeadline: a change sent while the master is unreachable is retried
// for the retry time even when the caller is interrupted, but a deadline the
// caller set still ends it (Close's bounded flush relies on that).
func TestCallKeepsDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	c, err := proto.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // the master goes away: nothing listens, every redial fails
	c.Close()
	m := &masterConn{addr: addr, c: c, retry: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = m.Call(ctx, proto.MsgUnlink, nil)
	if err == nil {
		t.Fatal("Call to an unreachable master succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Call with a 300 ms deadline returned after %v: the deadline was dropped", d)
	}
}
