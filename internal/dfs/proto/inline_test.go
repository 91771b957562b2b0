package proto

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestServeConnInline checks the two kinds of requests of ServeConnInline:
// an inline request (ChunkRead here) is answered on the reading goroutine,
// so a request sent after it on the connection starts only once it is done;
// any other request (ChunkInfo) runs in a goroutine of its own and holds up
// nothing.
func TestServeConnInline(t *testing.T) {
	ln, ctx, log := testListener(t)

	blockInfo := make(chan struct{})  // releases the ChunkInfo request
	blockFirst := make(chan struct{}) // releases the ChunkRead with payload "first"
	var secondStarted atomic.Bool
	h := func(ctx context.Context, f *Frame) ([]byte, error) {
		switch {
		case f.Type == MsgChunkInfo:
			<-blockInfo
		case string(f.Payload) == "first":
			<-blockFirst
		case string(f.Payload) == "second":
			secondStarted.Store(true)
		}
		return f.Payload, nil
	}
	inline := func(f *Frame) bool { return f.Type == MsgChunkRead }
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		ServeConnInline(ctx, c, h, inline, log)
	}()
	c, err := Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	// A request in its own goroutine blocks nothing behind it.
	infoDone := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, MsgChunkInfo, []byte("info"))
		infoDone <- err
	}()
	time.Sleep(20 * time.Millisecond) // let ChunkInfo reach the server first
	if got, err := c.Call(ctx, MsgChunkRead, []byte("quick")); err != nil || string(got) != "quick" {
		t.Fatalf("inline request behind a blocked one: got %q, %v, want quick", got, err)
	}
	select {
	case err := <-infoDone:
		t.Fatalf("blocked ChunkInfo answered early (%v)", err)
	default:
	}
	close(blockInfo)
	if err := <-infoDone; err != nil {
		t.Fatalf("ChunkInfo: %v", err)
	}

	// An inline request holds the requests behind it until it is answered.
	firstDone := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, MsgChunkRead, []byte("first"))
		firstDone <- err
	}()
	time.Sleep(20 * time.Millisecond)
	secondDone := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, MsgChunkRead, []byte("second"))
		secondDone <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if secondStarted.Load() {
		t.Fatal("the request behind an unanswered inline request started: got concurrent, want in order")
	}
	close(blockFirst)
	for _, ch := range []chan error{firstDone, secondDone} {
		if err := <-ch; err != nil {
			t.Fatalf("inline request: %v", err)
		}
	}
	if !secondStarted.Load() {
		t.Fatal("second request not handled")
	}
}
