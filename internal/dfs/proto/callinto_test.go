package proto

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestCallInto: a reply that fits goes straight into the caller's buffer; a larger one
// and an error reply are allocated; a caller whose context ends while its reply is
// being read gets its buffer back only after the reader is done with it.
func TestCallInto(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	release := make(chan struct{})
	go ServeConn(t.Context(), b, func(_ context.Context, f *Frame) ([]byte, error) {
		switch string(f.Payload) {
		case "small":
			return bytes.Repeat([]byte{1}, 100), nil
		case "large":
			return bytes.Repeat([]byte{2}, 5000), nil
		case "slow":
			<-release
			return bytes.Repeat([]byte{3}, 4096), nil
		}
		return nil, errors.New("no such thing")
	}, slog.New(slog.DiscardHandler))
	c := NewClient(a)
	dst := make([]byte, 4096)
	got, err := c.CallInto(t.Context(), MsgChunkRead, []byte("small"), dst)
	if err != nil || len(got) != 100 || &got[0] != &dst[0] || got[99] != 1 {
		t.Fatalf("small reply: %v, %d bytes, into dst %v", err, len(got), len(got) > 0 && &got[0] == &dst[0])
	}
	got, err = c.CallInto(t.Context(), MsgChunkRead, []byte("large"), dst)
	if err != nil || len(got) != 5000 || &got[0] == &dst[0] || dst[0] != 1 {
		t.Fatalf("large reply: %v, %d bytes, dst touched %v", err, len(got), dst[0] != 1)
	}
	_, err = c.CallInto(t.Context(), MsgChunkRead, []byte("other"), dst)
	var er *ErrorReply
	if !errors.As(err, &er) || dst[0] != 1 {
		t.Fatalf("error reply: %v (dst touched %v)", err, dst[0] != 1)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	go func() { time.Sleep(100 * time.Millisecond); close(release) }()
	if _, err := c.CallInto(ctx, MsgChunkRead, []byte("slow"), dst); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow reply: %v, want the deadline", err)
	}
	// The late reply is dropped; the connection goes on.
	got, err = c.CallInto(t.Context(), MsgChunkRead, []byte("small"), make([]byte, 200))
	if err != nil || len(got) != 100 {
		t.Fatalf("after a late reply: %v, %d bytes", err, len(got))
	}
}
