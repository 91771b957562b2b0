package iscsi

import (
	"bytes"
	"testing"
)

// countingWriter records what reaches the connection and how many writes it took.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

func TestSockWriter(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), SockDirect/16*3) // 48 KiB
	tests := []struct {
		name   string
		pieces [][]byte
		// wantWrites is the Write calls reaching the connection before the final
		// Flush. A plain io.Writer gets one per buffer of a gathered write; a
		// *net.TCPConn gets them as one writev.
		wantWrites int
	}{
		{"small pieces stay buffered", [][]byte{make([]byte, 48), make([]byte, 4), make([]byte, 18)}, 0},
		{"header then large data: one gathered write", [][]byte{make([]byte, 48), big}, 2},
		{"large data alone", [][]byte{big}, 1},
		{"two PDUs", [][]byte{make([]byte, 48), big, make([]byte, 4), make([]byte, 48), big, make([]byte, 4)}, 4},
		{"small data past the flush mark", [][]byte{make([]byte, SockDirect-1), make([]byte, SockDirect-1), make([]byte, SockDirect-1), make([]byte, SockDirect-1), make([]byte, SockDirect-1)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cw countingWriter
			w := NewSockWriter(&cw)
			var want []byte
			for k, p := range tt.pieces {
				p = append([]byte(nil), p...)
				if len(p) > 0 {
					p[0] = byte(k + 1) // make the order visible
				}
				want = append(want, p...)
				if n, err := w.Write(p); n != len(p) || err != nil {
					t.Fatalf("Write(%d bytes): got %d, %v", len(p), n, err)
				}
				if len(p) >= SockDirect {
					clear(p) // the caller may reuse a large buffer as soon as Write returns
				}
			}
			if cw.writes != tt.wantWrites {
				t.Errorf("got %d writes before Flush, want %d", cw.writes, tt.wantWrites)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(cw.Bytes(), want) {
				t.Errorf("got %d bytes on the connection, not the %d written in order", cw.Len(), len(want))
			}
		})
	}
}
