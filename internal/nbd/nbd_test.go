package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/blockdev"
)

func startServer(t testing.TB, exports ...Export) *Server {
	t.Helper()
	return startServerAt(t, "127.0.0.1:0", exports...)
}

// startServerAt serves exports on listen (host:port or unix:PATH).
func startServerAt(t testing.TB, listen string, exports ...Export) *Server {
	t.Helper()
	s, err := New(Config{Listen: listen, Exports: exports})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Close() })
	return s
}

// client is a minimal fixed-newstyle client for tests.
type client struct {
	t    *testing.T
	c    net.Conn
	size uint64
	tf   uint16
}

func dial(t *testing.T, s *Server, export string) *client {
	t.Helper()
	c, err := net.Dial(s.Addr().Network(), s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var hello [18]byte
	io.ReadFull(c, hello[:])
	if binary.BigEndian.Uint64(hello[:]) != magicInit || binary.BigEndian.Uint16(hello[16:])&flagFixedNewstyle == 0 {
		t.Fatalf("bad server greeting % x", hello)
	}
	binary.Write(c, binary.BigEndian, uint32(flagFixedNewstyle|flagNoZeroes))
	sendOpt(c, optExportName, []byte(export))
	var info [10]byte
	if _, err := io.ReadFull(c, info[:]); err != nil {
		t.Fatalf("export %q: %v", export, err)
	}
	return &client{t: t, c: c, size: binary.BigEndian.Uint64(info[:]), tf: binary.BigEndian.Uint16(info[8:])}
}

func sendOpt(w io.Writer, code uint32, data []byte) {
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, code)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	w.Write(append(b, data...))
}

func (c *client) send(typ, flags uint16, handle, off uint64, length uint32, data []byte) {
	b := binary.BigEndian.AppendUint32(nil, magicReq)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, handle)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	c.c.Write(append(b, data...))
}

// recv reads one simple reply; n is the data length expected if the reply succeeds.
func (c *client) recv(n int) (handle uint64, errno uint32, data []byte) {
	c.t.Helper()
	var h [16]byte
	if _, err := io.ReadFull(c.c, h[:]); err != nil {
		c.t.Fatalf("reply: %v", err)
	}
	handle, errno = binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint32(h[4:])
	if errno == 0 && n > 0 {
		data = make([]byte, n)
		io.ReadFull(c.c, data)
	}
	return
}

func TestReadWriteFlushTrim(t *testing.T) {
	dev := blockdev.NewMem(4<<20, 512)
	s := startServer(t, Export{Name: "disk", Device: dev})
	c := dial(t, s, "disk")
	if c.size != 4<<20 || c.tf&tfSendFlush == 0 || c.tf&tfSendTrim == 0 {
		t.Fatalf("size %d flags %#x: want 4 MiB with flush and trim", c.size, c.tf)
	}
	tests := []struct {
		name   string
		off    uint64
		length int
	}{
		{"aligned", 4096, 64 << 10},
		{"unaligned head and tail", 1000, 3000},
		{"within one block", 10, 20},
	}
	for i, tc := range tests {
		p := bytes.Repeat([]byte{byte(i + 1)}, tc.length)
		c.send(cmdWrite, cmdFlagFUA, 1, tc.off, uint32(tc.length), p)
		if _, e, _ := c.recv(0); e != 0 {
			t.Fatalf("%s: write errno %d", tc.name, e)
		}
		c.send(cmdRead, 0, 2, tc.off, uint32(tc.length), nil)
		if _, e, got := c.recv(tc.length); e != 0 || !bytes.Equal(got, p) {
			t.Errorf("%s: read back errno %d, equal %v", tc.name, e, bytes.Equal(got, p))
		}
	}
	// The bytes around an unaligned write are untouched.
	c.send(cmdRead, 0, 3, 0, 10, nil)
	if _, _, got := c.recv(10); !bytes.Equal(got, make([]byte, 10)) {
		t.Errorf("bytes before an unaligned write changed: % x", got)
	}
	c.send(cmdTrim, 0, 4, 4096, 64<<10, nil)
	c.recv(0)
	c.send(cmdRead, 0, 5, 4096, 512, nil)
	if _, _, got := c.recv(512); !bytes.Equal(got, make([]byte, 512)) {
		t.Errorf("trimmed range does not read as zeroes")
	}
	c.send(cmdWriteZeroes, 0, 6, 1000, 100, nil)
	c.recv(0)
	c.send(cmdRead, 0, 7, 990, 120, nil)
	_, _, got := c.recv(120)
	// 990..999 were never written; 1000..3999 hold 2s from the unaligned write above.
	want := append(make([]byte, 110), bytes.Repeat([]byte{2}, 10)...)
	if !bytes.Equal(got, want) {
		t.Errorf("write zeroes 1000+100: got % x", got)
	}
	c.send(cmdFlush, 0, 8, 0, 0, nil)
	if h, e, _ := c.recv(0); h != 8 || e != 0 {
		t.Errorf("flush: handle %d errno %d", h, e)
	}
	c.send(cmdRead, 0, 9, 4<<20-512, 1024, nil)
	if _, e, _ := c.recv(1024); e != errInval {
		t.Errorf("read past the end: errno %d, want EINVAL", e)
	}
	c.send(cmdWrite, 0, 10, 4<<20-512, 1024, make([]byte, 1024))
	if _, e, _ := c.recv(0); e != errNoSpc {
		t.Errorf("write past the end: errno %d, want ENOSPC", e)
	}
}

func TestReadOnlyExportRefusesWrites(t *testing.T) {
	dev := blockdev.NewMem(1<<20, 512)
	dev.SetReadOnly(true)
	s := startServer(t, Export{Name: "ro", Device: dev})
	c := dial(t, s, "ro")
	if c.tf&tfReadOnly == 0 {
		t.Errorf("flags %#x: want READ_ONLY", c.tf)
	}
	c.send(cmdWrite, 0, 1, 0, 512, make([]byte, 512))
	if _, e, _ := c.recv(0); e != errPerm {
		t.Errorf("write to read-only export: errno %d, want EPERM", e)
	}
}

// slowDev delays reads so the test can see requests run concurrently.
type slowDev struct{ *blockdev.Mem }

func (d slowDev) ReadAt(p []byte, off int64) (int, error) {
	time.Sleep(100 * time.Millisecond)
	return d.Mem.ReadAt(p, off)
}

func TestRequestsRunConcurrently(t *testing.T) {
	s := startServer(t, Export{Name: "slow", Device: slowDev{blockdev.NewMem(1<<20, 512)}})
	c := dial(t, s, "slow")
	start := time.Now()
	for i := range 16 {
		c.send(cmdRead, 0, uint64(i), uint64(i*4096), 4096, nil)
	}
	seen := map[uint64]bool{}
	for range 16 {
		h, e, _ := c.recv(4096)
		if e != 0 {
			t.Fatalf("read errno %d", e)
		}
		seen[h] = true
	}
	if len(seen) != 16 {
		t.Errorf("got replies for %d distinct handles, want 16", len(seen))
	}
	if el := time.Since(start); el > 800*time.Millisecond {
		t.Errorf("16 reads of 100 ms each took %v: they were not executed concurrently", el)
	}
}

func TestUnknownExportAndBadClientLeakNothing(t *testing.T) {
	s := startServer(t, Export{Name: "disk", Device: blockdev.NewMem(1<<20, 512)})
	before := runtime.NumGoroutine()
	for _, payload := range [][]byte{
		nil, []byte("garbage that is not a handshake at all"),
		append([]byte{0, 0, 0, 3}, bytes.Repeat([]byte{0xff}, 40)...),
	} {
		c, err := net.Dial(s.Addr().Network(), s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.ReadFull(c, make([]byte, 18))
		c.Write(payload)
		c.Close()
	}
	c, _ := net.Dial(s.Addr().Network(), s.Addr().String())
	io.ReadFull(c, make([]byte, 18))
	binary.Write(c, binary.BigEndian, uint32(flagFixedNewstyle|flagNoZeroes))
	sendOpt(c, optExportName, []byte("nope"))
	if n, _ := c.Read(make([]byte, 10)); n != 0 {
		t.Errorf("unknown export: server answered %d bytes, want the connection closed", n)
	}
	c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines: %d after bad clients, %d before", n, before)
	}
}

// TestLibnbdTools checks the server against libnbd's tools (Debian libnbd-bin), when
// they are installed: nbdinfo must see the export, and nbdcopy must write and read back.
func TestLibnbdTools(t *testing.T) {
	for _, tool := range []string{"nbdinfo", "nbdcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian libnbd-bin)", tool)
		}
	}
	for _, listen := range []string{"127.0.0.1:0", "unix:" + filepath.Join(t.TempDir(), "nbd.sock")} {
		t.Run(strings.SplitN(listen, ":", 2)[0], func(t *testing.T) {
			dev := blockdev.NewMem(8<<20, 512)
			s := startServerAt(t, listen, Export{Name: "disk", Device: dev})
			libnbdRoundTrip(t, s.URI("disk"))
		})
	}
}

// libnbdRoundTrip checks url with nbdinfo, then writes and reads back 8 MiB with nbdcopy.
func libnbdRoundTrip(t *testing.T, url string) {
	t.Helper()
	out, err := exec.Command("nbdinfo", url).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "8388608") {
		t.Fatalf("nbdinfo %s: %v\n%s", url, err, out)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	data := bytes.Repeat([]byte("rampart!"), 1<<20)
	os.WriteFile(src, data, 0o600)
	if out, err := exec.Command("nbdcopy", src, url).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy to the export: %v\n%s", err, out)
	}
	dst := filepath.Join(dir, "dst")
	if out, err := exec.Command("nbdcopy", url, dst).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy from the export: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Errorf("data copied back through NBD differs")
	}
}

func TestURI(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "n.sock")
	for _, tt := range []struct{ listen, wantPrefix, wantSuffix string }{
		{"127.0.0.1:0", "nbd://127.0.0.1:", "/my%20disk"},
		{"unix:" + sock, "nbd+unix:///my%20disk?socket=", sock},
	} {
		s := startServerAt(t, tt.listen, Export{Name: "my disk", Device: blockdev.NewMem(1<<20, 512)})
		if got := s.URI("my disk"); !strings.HasPrefix(got, tt.wantPrefix) || !strings.HasSuffix(got, tt.wantSuffix) {
			t.Errorf("listen %s: got URI %q, want %s...%s", tt.listen, got, tt.wantPrefix, tt.wantSuffix)
		}
	}
	// A stale socket file is replaced; any other file is left alone.
	s := startServerAt(t, "unix:"+sock, Export{Name: "d", Device: blockdev.NewMem(1<<20, 512)})
	s.Close()
	plain := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(plain, []byte("keep"), 0o600)
	if _, err := New(Config{Listen: "unix:" + plain, Exports: []Export{{Name: "d", Device: blockdev.NewMem(1<<20, 512)}}}); err != nil {
		t.Fatal(err)
	}
	srv, _ := New(Config{Listen: "unix:" + plain, Exports: []Export{{Name: "d", Device: blockdev.NewMem(1<<20, 512)}}})
	if err := srv.Start(t.Context()); err == nil {
		srv.Close()
		t.Fatal("listening over a plain file succeeded, want an error")
	}
	if b, _ := os.ReadFile(plain); string(b) != "keep" {
		t.Error("the plain file was replaced")
	}
}
