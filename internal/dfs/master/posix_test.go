package master

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/meta"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

func TestLockTableRanges(t *testing.T) {
	tab := newLockTable()
	l := func(owner, start, end uint64, typ uint32) *proto.Lock {
		return &proto.Lock{Ino: 1, Owner: owner, Start: start, End: end, Type: typ}
	}
	steps := []struct {
		name string
		sess uint64
		l    *proto.Lock
		want bool
	}{
		{"owner 1 writes 0-99", 1, l(1, 0, 99, proto.LockWrite), true},
		{"owner 1 unlocks 40-59", 1, l(1, 40, 59, proto.LockUnlock), true},
		{"owner 2 writes 40-59 in the hole", 1, l(2, 40, 59, proto.LockWrite), true},
		{"owner 3 reads 39: left piece kept", 1, l(3, 39, 39, proto.LockRead), false},
		{"owner 3 reads 60: right piece kept", 1, l(3, 60, 60, proto.LockRead), false},
		{"same owner in another session conflicts", 2, l(1, 0, 0, proto.LockRead), false},
		{"owner 1 downgrades 0-99 to read (40-59 is owner 2's)", 1, l(1, 0, 39, proto.LockRead), true},
		{"owner 3 reads 0-39 now", 1, l(3, 0, 39, proto.LockRead), true},
		{"owner 3 cannot write 0-39 (owner 1 reads)", 1, l(3, 0, 39, proto.LockWrite), false},
	}
	for _, s := range steps {
		if got, _ := tab.set(s.sess, s.l); got != s.want {
			t.Errorf("%s: got %v, want %v", s.name, got, s.want)
		}
	}
	// Owner 1: 0-39 read, 60-99 write; owner 2: 40-59 write; owner 3: 0-39 read.
	if n := tab.count(); n != 4 {
		t.Errorf("held locks: got %d, want 4", n)
	}
	tab.dropSession(1)
	if got, _ := tab.set(2, l(9, 0, 1000, proto.LockWrite)); !got {
		t.Errorf("lock after the holding session ended: refused")
	}
}

// FuzzPOSIXMessages feeds arbitrary payloads of every POSIX message type to
// the master's handler: it must answer or refuse, never crash.
func FuzzPOSIXMessages(f *testing.F) {
	m, err := New(Config{Dir: f.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	m.posix.reopen = time.Millisecond
	f.Cleanup(func() {
		m.wg.Wait() // sessions end 20ms after their last request
		m.meta.Close()
	})
	if _, err := m.meta.Create(proto.RootIno, "f", meta.Node{Mode: syscall.S_IFREG | 0o644}); err != nil {
		f.Fatal(err)
	}
	types := []proto.MsgType{proto.MsgOpen, proto.MsgRelease, proto.MsgCreateOpen, proto.MsgGetxattr, proto.MsgSetxattr,
		proto.MsgListxattr, proto.MsgRemovexattr, proto.MsgStatfs, proto.MsgGetlk, proto.MsgSetlk}
	var e proto.Enc
	(&proto.Lock{Ino: 2, Owner: 1, End: 10, Type: proto.LockWrite}).Encode(&e)
	for i := range types {
		f.Add(uint8(i), append([]byte(nil), e.B...))
		f.Add(uint8(i), binary.BigEndian.AppendUint64(nil, 2))
	}
	f.Add(uint8(1), []byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, ti uint8, b []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, handled, _ := m.handlePOSIX(ctx, &proto.Frame{Type: types[int(ti)%len(types)], Payload: b})
		if !handled {
			t.Fatalf("POSIX message %s not handled", types[int(ti)%len(types)])
		}
	})
}

// TestOrphansOfPreviousRun: a restarted master keeps an orphan that a
// reconnecting client opens again and deletes the others after the grace.
func TestOrphansOfPreviousRun(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := New(Config{Dir: dir, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	kept, _ := m.meta.CreateOpen(proto.RootIno, "kept", meta.Node{Mode: syscall.S_IFREG})
	gone, _ := m.meta.CreateOpen(proto.RootIno, "gone", meta.Node{Mode: syscall.S_IFREG})
	m.meta.Unlink(proto.RootIno, "kept", false)
	m.meta.Unlink(proto.RootIno, "gone", false)
	m.meta.Close()

	m, err = New(Config{Dir: dir, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer m.meta.Close()
	m.posix.grace = 50 * time.Millisecond
	m.posix.reopen = time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); m.wg.Wait() }()
	var e proto.Enc
	e.U64(kept.Ino)
	e.U32(0)
	if _, err := m.handleClient(ctx, &proto.Frame{Type: proto.MsgOpen, Payload: e.B}); err != nil {
		t.Fatalf("reopen an orphan after the restart: %v", err)
	}
	time.Sleep(60 * time.Millisecond)
	e = proto.Enc{}
	e.U64(gone.Ino)
	if _, err := m.handleClient(ctx, &proto.Frame{Type: proto.MsgGetattr, Payload: e.B}); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("unopened orphan after the grace: got %v, want ENOENT", err)
	}
	e = proto.Enc{}
	e.U64(kept.Ino)
	if _, err := m.handleClient(ctx, &proto.Frame{Type: proto.MsgGetattr, Payload: e.B}); err != nil {
		t.Errorf("reopened orphan after the grace: %v", err)
	}
}

// TestReopenAfterLostConnection: the handles of a closed connection stay
// counted for a moment, so a client that reconnects can open its unlinked
// file again; without that, the file goes when the grace ends.
func TestReopenAfterLostConnection(t *testing.T) {
	m, err := New(Config{Dir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.meta.Close()
	m.posix.reopen = 100 * time.Millisecond
	call := func(ctx context.Context, typ proto.MsgType, e *proto.Enc) ([]byte, error) {
		return m.handleClient(ctx, &proto.Frame{Type: typ, Payload: e.B})
	}
	for _, reopen := range []bool{true, false} {
		conn1, end1 := context.WithCancel(t.Context())
		var e proto.Enc
		e.U64(proto.RootIno)
		e.String("f")
		e.U32(syscall.S_IFREG | 0o644)
		e.U32(0)
		e.U32(0)
		e.U32(0)
		e.String("")
		b, err := call(conn1, proto.MsgCreateOpen, &e)
		if err != nil {
			t.Fatal(err)
		}
		var a proto.Attr
		if err := a.Decode(b); err != nil {
			t.Fatal(err)
		}
		if _, err := m.meta.Unlink(proto.RootIno, "f", false); err != nil {
			t.Fatal(err)
		}
		end1() // the connection breaks
		conn2, end2 := context.WithCancel(t.Context())
		if reopen {
			e = proto.Enc{}
			e.U64(a.Ino)
			e.U32(0)
			if _, err := call(conn2, proto.MsgOpen, &e); err != nil {
				t.Fatalf("reopen on a new connection: %v", err)
			}
		}
		time.Sleep(300 * time.Millisecond)
		_, err = m.meta.Getattr(a.Ino)
		if reopen && err != nil {
			t.Errorf("reopened unlinked file after the grace: %v", err)
		}
		if !reopen && !errors.Is(err, syscall.ENOENT) {
			t.Errorf("unlinked file nobody reopened, after the grace: got %v, want ENOENT", err)
		}
		end2()
		m.wg.Wait()
		if _, err := m.meta.Getattr(a.Ino); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("reopen %v: unlinked file after every connection closed: got %v, want ENOENT", reopen, err)
		}
	}
}
