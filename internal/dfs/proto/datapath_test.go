package proto

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"testing"
)

// EncodeHead followed by the data is Encode, and CallParts delivers the two
// parts as one payload that decodes back to the message.
func TestChunkWriteHeadParts(t *testing.T) {
	m := ChunkWrite{ID: 7, Version: 3, Offset: 4096, Chain: []string{"a:1", "b:2"}, Data: bytes.Repeat([]byte{0xab}, 300<<10)}
	var whole, head Enc
	m.Encode(&whole)
	m.EncodeHead(&head)
	if !bytes.Equal(whole.B, append(head.B, m.Data...)) {
		t.Fatal("EncodeHead + data differs from Encode")
	}
	a, b := net.Pipe()
	defer a.Close()
	got := make(chan ChunkWrite, 1)
	go ServeConn(t.Context(), b, func(_ context.Context, f *Frame) ([]byte, error) {
		var m ChunkWrite
		err := m.Decode(f.Payload)
		got <- m
		return nil, err
	}, slog.New(slog.DiscardHandler))
	c := NewClient(a)
	if _, err := c.CallParts(t.Context(), MsgChunkWrite, head.B, m.Data); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.ID != m.ID || r.Version != m.Version || r.Offset != m.Offset || len(r.Chain) != 2 || r.Chain[1] != "b:2" || !bytes.Equal(r.Data, m.Data) {
		t.Fatalf("decoded %+v", r.Chain)
	}
}
