package nbd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

// FuzzNegotiate feeds arbitrary client bytes to the handshake: it must never panic.
func FuzzNegotiate(f *testing.F) {
	var seed bytes.Buffer
	seed.Write([]byte{0, 0, 0, 3})
	sendOpt(&seed, optList, nil)
	sendOpt(&seed, optGo, append([]byte{0, 0, 0, 4}, "disk\x00\x01\x00\x03"...))
	f.Add(seed.Bytes())
	f.Add([]byte{0, 0, 0, 1, 0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54, 0, 0, 0, 1, 0, 0, 0, 4, 'd', 'i', 's', 'k'})
	s, _ := New(Config{Exports: []Export{{Name: "disk", Device: blockdev.NewMem(1<<20, 512)}}})
	f.Fuzz(func(t *testing.T, in []byte) {
		s.negotiate(bytes.NewReader(in), io.Discard)
	})
}

// FuzzTransmission feeds arbitrary request streams to a connection's request loop.
func FuzzTransmission(f *testing.F) {
	c := &client{}
	var b bytes.Buffer
	c.c = nil
	f.Add([]byte{0x25, 0x60, 0x95, 0x13, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4})
	f.Add(b.Bytes())
	dev := blockdev.NewMem(1<<20, 512)
	f.Fuzz(func(t *testing.T, in []byte) {
		tr := newTransmission(&blockdev.Unaligned{Dev: dev}, bufio.NewReader(bytes.NewReader(in)), io.Discard, 4)
		tr.run(context.Background())
	})
}
