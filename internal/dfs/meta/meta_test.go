package meta

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCreate(t *testing.T, s *Store, parent uint64, name string, mode uint32) *Attr {
	t.Helper()
	a, err := s.Create(parent, name, Node{Mode: mode, Uid: 1000, Gid: 100})
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
	return a
}

func TestNamespace(t *testing.T) {
	s := openStore(t, t.TempDir())
	d := mustCreate(t, s, RootIno, "dir", syscall.S_IFDIR|0o755)
	f := mustCreate(t, s, d.Ino, "file", syscall.S_IFREG|0o644)
	if f.Goal != DefaultGoal {
		t.Errorf("goal of new file: got %d, want %d", f.Goal, DefaultGoal)
	}
	if _, err := s.Create(d.Ino, "file", Node{Mode: syscall.S_IFREG}); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("create existing: got %v, want EEXIST", err)
	}
	if _, err := s.Create(f.Ino, "x", Node{Mode: syscall.S_IFREG}); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("create under a file: got %v, want ENOTDIR", err)
	}
	for _, bad := range []string{"", ".", "..", "a/b", string(make([]byte, 256))} {
		if _, err := s.Create(d.Ino, bad, Node{Mode: syscall.S_IFREG}); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("create %q: got %v, want EINVAL", bad, err)
		}
	}
	l, err := s.Create(d.Ino, "link", Node{Mode: syscall.S_IFLNK | 0o777, Target: "file"})
	if err != nil || l.Target != "file" || l.Size != 4 {
		t.Errorf("symlink: got %+v, %v; want target file size 4", l, err)
	}
	got, err := s.Lookup(d.Ino, "file")
	if err != nil || got.Ino != f.Ino || got.Uid != 1000 {
		t.Errorf("lookup: got %+v, %v; want inode %d uid 1000", got, err, f.Ino)
	}
	ents, err := s.Readdir(d.Ino)
	if err != nil || len(ents) != 2 || ents[0].Name != "file" || ents[1].Name != "link" {
		t.Errorf("readdir: got %v, %v; want file, link", ents, err)
	}
	root, _ := s.Getattr(RootIno)
	if root.Nlink != 3 {
		t.Errorf("root nlink after mkdir: got %d, want 3", root.Nlink)
	}

	// Hard links.
	if _, err := s.Link(f.Ino, RootIno, "hard"); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Getattr(f.Ino); a.Nlink != 2 {
		t.Errorf("nlink after link: got %d, want 2", a.Nlink)
	}
	if _, err := s.Link(d.Ino, RootIno, "dirlink"); !errors.Is(err, syscall.EPERM) {
		t.Errorf("link a directory: got %v, want EPERM", err)
	}
	if _, err := s.Unlink(RootIno, "dir", true); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("rmdir non-empty: got %v, want ENOTEMPTY", err)
	}
	if _, err := s.Unlink(RootIno, "dir", false); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("unlink a directory: got %v, want EISDIR", err)
	}
	c, created, err := s.AllocChunk(f.Ino, 0)
	if err != nil || !created || c.ID == 0 || c.Version != 1 {
		t.Fatalf("alloc chunk: got %+v %v %v", c, created, err)
	}
	if c2, created, _ := s.AllocChunk(f.Ino, 0); created || c2 != c {
		t.Errorf("alloc existing chunk: got %+v created %v, want %+v", c2, created, c)
	}
	if freed, err := s.Unlink(d.Ino, "file", false); err != nil || len(freed) != 0 {
		t.Errorf("unlink one of two links: freed %v, %v; want nothing", freed, err)
	}
	if freed, err := s.Unlink(RootIno, "hard", false); err != nil || len(freed) != 1 || freed[0] != c {
		t.Errorf("unlink last link: freed %v, %v; want [%+v]", freed, err, c)
	}
	if _, err := s.Getattr(f.Ino); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("getattr after last unlink: got %v, want ENOENT", err)
	}
}

func TestRename(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := mustCreate(t, s, RootIno, "a", syscall.S_IFREG|0o644)
	b := mustCreate(t, s, RootIno, "b", syscall.S_IFREG|0o644)
	s.AllocChunk(b.Ino, 0)
	freed, err := s.Rename(RootIno, "a", RootIno, "b", 0)
	if err != nil || len(freed) != 1 {
		t.Fatalf("rename over file: freed %v, %v; want one chunk", freed, err)
	}
	if got, _ := s.Lookup(RootIno, "b"); got == nil || got.Ino != a.Ino {
		t.Errorf("after rename b is %+v, want inode %d", got, a.Ino)
	}
	if _, err := s.Lookup(RootIno, "a"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("old name after rename: got %v, want ENOENT", err)
	}
	d1 := mustCreate(t, s, RootIno, "d1", syscall.S_IFDIR|0o755)
	d2 := mustCreate(t, s, RootIno, "d2", syscall.S_IFDIR|0o755)
	mustCreate(t, s, d2.Ino, "x", syscall.S_IFREG)
	if _, err := s.Rename(RootIno, "d1", RootIno, "d2", 0); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("rename over non-empty dir: got %v, want ENOTEMPTY", err)
	}
	if _, err := s.Rename(RootIno, "b", RootIno, "d1", RenameNoReplace); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("rename with noReplace over an entry: got %v, want EEXIST", err)
	}
	if _, err := s.Rename(RootIno, "b", RootIno, "d1", 0); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("rename file over dir: got %v, want EISDIR", err)
	}
	if _, err := s.Rename(RootIno, "d1", d2.Ino, "moved", 0); err != nil {
		t.Fatal(err)
	}
	root, _ := s.Getattr(RootIno)
	nd2, _ := s.Getattr(d2.Ino)
	if root.Nlink != 3 || nd2.Nlink != 3 {
		t.Errorf("nlink after moving a dir: root %d d2 %d, want 3 and 3", root.Nlink, nd2.Nlink)
	}
	_ = d1
}

func TestSetattrTruncateAndXattr(t *testing.T) {
	s := openStore(t, t.TempDir())
	f := mustCreate(t, s, RootIno, "f", syscall.S_IFREG|0o644)
	for i := uint32(0); i < 3; i++ {
		s.AllocChunk(f.Ino, i)
	}
	s.SetSize(f.Ino, 3*ChunkSize, 5)
	size := uint64(ChunkSize + 1)
	mode := uint32(0o600)
	a, freed, err := s.Setattr(f.Ino, SetAttrIn{Size: &size, Mode: &mode})
	if err != nil || a.Size != size || a.Mode != syscall.S_IFREG|0o600 || len(freed) != 1 {
		t.Fatalf("truncate: got %+v freed %v, %v", a, freed, err)
	}
	if cs, _ := s.Chunks(f.Ino); len(cs) != 2 {
		t.Errorf("chunks after truncate: got %d, want 2", len(cs))
	}
	if err := s.SetXattr(f.Ino, "user.k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetXattr(f.Ino, "user.k"); err != nil || string(v) != "v" {
		t.Errorf("getxattr: got %q, %v; want v", v, err)
	}
	if names, _ := s.ListXattr(f.Ino); len(names) != 1 || names[0] != "user.k" {
		t.Errorf("listxattr: got %v, want [user.k]", names)
	}
	if err := s.RemoveXattr(f.Ino, "user.k"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetXattr(f.Ino, "user.k"); !errors.Is(err, syscall.ENODATA) {
		t.Errorf("getxattr after remove: got %v, want ENODATA", err)
	}
	goal := uint8(3)
	s.Setattr(RootIno, SetAttrIn{Goal: &goal})
	if g := mustCreate(t, s, RootIno, "g", syscall.S_IFREG); g.Goal != 3 {
		t.Errorf("inherited goal: got %d, want 3", g.Goal)
	}
}

func TestReopenKeepsCommitted(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := s.Create(RootIno, fmt.Sprintf("f%02d", i), Node{Mode: syscall.S_IFREG | 0o644}); err != nil {
				t.Errorf("create f%02d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	c, _, _ := s.AllocChunk(2, 0)
	s.Close()

	s = openStore(t, dir)
	ents, err := s.Readdir(RootIno)
	if err != nil || len(ents) != 64 {
		t.Fatalf("after reopen: %d entries, %v; want 64", len(ents), err)
	}
	seen := map[uint64]bool{}
	for _, e := range ents {
		if seen[e.Ino] {
			t.Errorf("inode %d used twice", e.Ino)
		}
		seen[e.Ino] = true
	}
	n, err := s.Create(RootIno, "new", Node{Mode: syscall.S_IFREG})
	if err != nil || seen[n.Ino] {
		t.Errorf("create after reopen reused inode %d (%v)", n.Ino, err)
	}
	f2, _ := s.Lookup(RootIno, "new")
	c2, _, _ := s.AllocChunk(f2.Ino, 0)
	if c2.ID <= c.ID {
		t.Errorf("chunk id after reopen: got %d, want > %d", c2.ID, c.ID)
	}
}

func FuzzDecodeAttr(f *testing.F) {
	var e proto.Enc
	(&Attr{Ino: 5, Mode: syscall.S_IFLNK | 0o777, Target: "x"}).Encode(&e)
	f.Add(e.B)
	f.Fuzz(func(t *testing.T, b []byte) {
		var a Attr
		if a.Decode(b) != nil {
			return
		}
		var e proto.Enc
		a.Encode(&e)
		if !bytes.Equal(e.B, b) {
			t.Fatalf("re-encodes to %x, want %x", e.B, b)
		}
	})
}
