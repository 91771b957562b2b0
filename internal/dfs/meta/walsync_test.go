package meta

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

func TestParseSyncMode(t *testing.T) {
	for in, want := range map[string]SyncMode{"always": SyncAlways, "interval": SyncInterval, "": SyncInterval} {
		got, err := ParseSyncMode(in)
		if err != nil || got != want {
			t.Errorf("ParseSyncMode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseSyncMode("never"); err == nil {
		t.Error("ParseSyncMode(never) accepted")
	}
}

// TestIntervalModeSyncs checks that in SyncInterval mode the log files are
// marked dirty by commits and cleaned by the background loop and by Sync.
func TestIntervalModeSyncs(t *testing.T) {
	s, err := OpenWith(t.TempDir(), Options{Sync: SyncInterval, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dirty := func() int {
		s.wal.mu.Lock()
		defer s.wal.mu.Unlock()
		n := 0
		for f := range s.wal.files {
			if f.dirty.Load() {
				n++
			}
		}
		return n
	}
	if _, err := s.Create(RootIno, "a", Node{Mode: syscall.S_IFREG | 0o644}); err != nil {
		t.Fatal(err)
	}
	if dirty() == 0 {
		t.Fatal("no dirty log file after a commit")
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := dirty(); n != 0 {
		t.Fatalf("%d dirty log files after Sync", n)
	}
	s2, err := OpenWith(t.TempDir(), Options{Sync: SyncInterval, SyncInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Create(RootIno, "a", Node{Mode: syscall.S_IFREG | 0o644}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s2.wal.mu.Lock()
		n := 0
		for f := range s2.wal.files {
			if f.dirty.Load() {
				n++
			}
		}
		s2.wal.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background loop did not fsync the log")
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkCreateSync(b *testing.B) {
	for _, m := range []SyncMode{SyncAlways, SyncInterval} {
		b.Run(m.String(), func(b *testing.B) {
			s, err := OpenWith(b.TempDir(), Options{Sync: m})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for i := 0; i < b.N; i++ {
				if _, err := s.Create(RootIno, fmt.Sprintf("f%d", i), Node{Mode: syscall.S_IFREG | 0o644}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestWaitDurableSharesOneFsync: WaitDurable returns with the log on disk,
// and concurrent callers share fsyncs instead of taking one each.
func TestWaitDurableSharesOneFsync(t *testing.T) {
	s, err := OpenWith(t.TempDir(), Options{Sync: SyncInterval, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dirty := func() bool {
		s.wal.mu.Lock()
		defer s.wal.mu.Unlock()
		for f := range s.wal.files {
			if f.dirty.Load() {
				return true
			}
		}
		return false
	}
	if _, err := s.Create(RootIno, "a", Node{Mode: syscall.S_IFREG | 0o644}); err != nil {
		t.Fatal(err)
	}
	if !dirty() {
		t.Fatal("no dirty log file after a commit")
	}
	if err := s.WaitDurable(); err != nil {
		t.Fatal(err)
	}
	if dirty() {
		t.Fatal("log still dirty after WaitDurable")
	}
	const callers = 64
	for round := 0; round < 3; round++ {
		before := s.wal.syncs.Load()
		errs := make(chan error, callers)
		for i := 0; i < callers; i++ {
			go func() {
				_, err := s.Create(RootIno, fmt.Sprintf("r%d-%d", round, i), Node{Mode: syscall.S_IFREG | 0o644})
				if err == nil {
					err = s.WaitDurable()
				}
				errs <- err
			}()
		}
		for i := 0; i < callers; i++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if dirty() {
			t.Fatal("log dirty after every caller's WaitDurable returned")
		}
		if n := s.wal.syncs.Load() - before; n >= callers {
			t.Errorf("round %d: %d fsyncs for %d concurrent WaitDurable calls, want them shared", round, n, callers)
		}
	}
	// SyncAlways: nothing to wait for.
	s2, err := OpenWith(t.TempDir(), Options{Sync: SyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.WaitDurable(); err != nil {
		t.Fatal(err)
	}
}
