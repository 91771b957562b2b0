package raid

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The control socket: a process serving an array (anything that opened raid:... through
// volume.Open) listens on RunDir()/<array uuid>.sock, and `rampart raid` commands send
// it one JSON Request per connection and read one JSON Response. An advisory lock,
// RunDir()/<array uuid>.lock (flock, holding the pid), keeps a second process from
// assembling the array while it runs.

// ErrInUse is returned when another process holds the array.
var ErrInUse = errors.New("raid: array is in use by another process")

// arrayLock is the flock of RunDir()/<uuid>.lock.
type arrayLock struct {
	f      *os.File
	path   string
	shared bool // other holders may still hold the file: never remove it
}

// lockArray takes the array's lock: exclusive for an assembly that may write, shared
// for a read-only one (several may look at once; none while a writer holds it). A lock
// held by someone else is retried for up to wait, so a server starting while a
// read-only command looks at the members waits for it instead of failing. When the
// run directory cannot be used (no permission) it returns nil and no error: locking
// is advisory and best effort.
func lockArray(u UUID, shared bool, wait time.Duration) (*arrayLock, error) {
	how := syscall.LOCK_EX
	if shared {
		how = syscall.LOCK_SH
	}
	deadline := time.Now().Add(wait)
	dir := RunDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil //nolint:nilerr // no run directory: nothing to lock against
	}
	p := filepath.Join(dir, u.String()+".lock")
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, nil //nolint:nilerr // as above
		}
		if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
			b := make([]byte, 32)
			n, _ := f.ReadAt(b, 0)
			f.Close()
			pid := strings.TrimSpace(string(b[:n]))
			if errors.Is(err, syscall.EWOULDBLOCK) {
				if time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				if pid == "" {
					pid = "unknown (a read-only command)"
				}
				return nil, fmt.Errorf("array %s is assembled by pid %s (lock %s): %w", u, pid, p, ErrInUse)
			}
			return nil, fmt.Errorf("lock array %s (%s): %w", u, p, err)
		}
		// The holder removes the file when it lets go: a lock taken on a file that
		// is no longer at p is worth nothing, try again.
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(p)
		if err1 != nil || err2 != nil || !os.SameFile(fi, pi) {
			f.Close()
			continue
		}
		if !shared { // a shared holder leaves the file alone: others read it too
			if err := f.Truncate(0); err == nil {
				_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
			}
		}
		return &arrayLock{f: f, path: p, shared: shared}, nil
	}
}

func (l *arrayLock) release() {
	if l == nil {
		return
	}
	if !l.shared {
		_ = os.Remove(l.path) // while still locked: see lockArray
	}
	l.f.Close()
}

// controlServer answers Requests on the array's control socket.
type controlServer struct {
	a    *Array
	ln   net.Listener
	path string
	wg   sync.WaitGroup
}

// serveControl starts the control socket (the caller holds the array lock, so a
// socket file left by a dead process can be replaced).
func (a *Array) serveControl() error {
	p := SocketPath(a.uuid)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("raid %s: control socket: %w", a.name, err)
	}
	_ = os.Remove(p)
	ln, err := net.Listen("unix", p)
	if err != nil {
		return fmt.Errorf("raid %s: control socket: %w", a.name, err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("raid %s: control socket: %w", a.name, err)
	}
	s := &controlServer{a: a, ln: ln, path: p}
	a.ctl = s
	s.wg.Add(1)
	go s.accept()
	a.log.Info("raid control socket", "array", a.name, "path", p)
	return nil
}

func (s *controlServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.serve(c)
		}()
	}
}

func (s *controlServer) serve(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req Request
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); errors.Is(err, io.EOF) {
		return // a probe (Served)
	} else if err != nil {
		_ = json.NewEncoder(c).Encode(Response{Error: fmt.Sprintf("bad request: %s", err.Error())})
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	s.a.log.Info("raid control request", "array", s.a.name, "op", req.Op, "member", req.Member, "new", req.New)
	resp := s.a.Handle(s.a.ctx, req)
	_ = json.NewEncoder(c).Encode(resp)
}

// close stops accepting, waits for the requests in progress and removes the socket.
func (s *controlServer) close() {
	s.ln.Close()
	s.wg.Wait()
	_ = os.Remove(s.path)
}

// Served reports whether a process serves the array with this UUID on its control
// socket.
func Served(u UUID) bool {
	c, err := net.DialTimeout("unix", SocketPath(u), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Call sends req to the control socket of the array with this UUID. It returns
// ErrNotServed (wrapped) when no process listens there.
func Call(ctx context.Context, u UUID, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", SocketPath(u))
	if err != nil {
		return Response{}, fmt.Errorf("array %s: %w: %w", u, ErrNotServed, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, fmt.Errorf("array %s: send %s request: %w", u, req.Op, err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("array %s: read %s response: %w", u, req.Op, err)
	}
	return resp, nil
}

// ErrNotServed says that no process serves the array on its control socket.
var ErrNotServed = errors.New("raid: array not served")
