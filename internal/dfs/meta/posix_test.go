package meta

import (
	"errors"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

func TestRenameCases(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := mustCreate(t, s, RootIno, "a", syscall.S_IFDIR|0o755)
	b := mustCreate(t, s, a.Ino, "b", syscall.S_IFDIR|0o755)
	c := mustCreate(t, s, b.Ino, "c", syscall.S_IFDIR|0o755)
	mustCreate(t, s, RootIno, "f", syscall.S_IFREG|0o644)
	mustCreate(t, s, RootIno, "g", syscall.S_IFREG|0o644)
	mustCreate(t, s, RootIno, "empty", syscall.S_IFDIR|0o755)
	full := mustCreate(t, s, RootIno, "full", syscall.S_IFDIR|0o755)
	mustCreate(t, s, full.Ino, "x", syscall.S_IFREG)

	tests := []struct {
		name           string
		op             uint64
		on             string
		np             uint64
		nn             string
		flags          uint32
		want           error
		wantAt, wantIn string // after success: the name wantAt in root names what wantIn named before
	}{
		{"dir into itself", RootIno, "a", a.Ino, "a2", 0, syscall.EINVAL, "", ""},
		{"dir into its grandchild", RootIno, "a", c.Ino, "a2", 0, syscall.EINVAL, "", ""},
		{"dir over its own descendant's parent chain", a.Ino, "b", c.Ino, "b2", 0, syscall.EINVAL, "", ""},
		{"dir over file", RootIno, "empty", RootIno, "f", 0, syscall.ENOTDIR, "", ""},
		{"file over dir", RootIno, "f", RootIno, "empty", 0, syscall.EISDIR, "", ""},
		{"dir over non-empty dir", RootIno, "empty", RootIno, "full", 0, syscall.ENOTEMPTY, "", ""},
		{"noreplace over file", RootIno, "f", RootIno, "g", RenameNoReplace, syscall.EEXIST, "", ""},
		{"exchange with missing", RootIno, "f", RootIno, "nope", RenameExchange, syscall.ENOENT, "", ""},
		{"both flags", RootIno, "f", RootIno, "g", RenameExchange | RenameNoReplace, syscall.EINVAL, "", ""},
		{"unknown flag", RootIno, "f", RootIno, "g", 4, syscall.EINVAL, "", ""},
		{"missing source", RootIno, "nope", RootIno, "g", 0, syscall.ENOENT, "", ""},
		{"exchange file and dir", RootIno, "f", RootIno, "empty", RenameExchange, nil, "empty", "f"},
		{"dir over empty dir", RootIno, "f", RootIno, "full", 0, syscall.ENOTEMPTY, "", ""},
	}
	for _, tt := range tests {
		var before *Attr
		if tt.wantIn != "" {
			before, _ = s.Lookup(RootIno, tt.wantIn)
		}
		_, err := s.Rename(tt.op, tt.on, tt.np, tt.nn, tt.flags)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
			continue
		}
		if before != nil {
			if got, err := s.Lookup(RootIno, tt.wantAt); err != nil || got.Ino != before.Ino {
				t.Errorf("%s: %s is %+v, %v; want inode %d", tt.name, tt.wantAt, got, err, before.Ino)
			}
		}
	}
	// A directory over an empty one: the empty one goes, link counts follow.
	if _, err := s.Rename(RootIno, "f", a.Ino, "moved", 0); err != nil { // "f" is the empty dir now
		t.Fatalf("move dir: %v", err)
	}
	if _, err := s.Rename(RootIno, "full", a.Ino, "moved", 0); err != nil {
		t.Fatalf("dir over empty dir: %v", err)
	}
	if na, _ := s.Getattr(a.Ino); na.Nlink != 4 { // ., .., b, moved
		t.Errorf("nlink of a after dir moves: got %d, want 4", na.Nlink)
	}
	if root, _ := s.Getattr(RootIno); root.Nlink != 3 { // ., .., a ("empty" is a file now)
		t.Errorf("nlink of root: got %d, want 3", root.Nlink)
	}
	// The moved directory's parent pointer follows: moving a into moved fails.
	moved, _ := s.Lookup(a.Ino, "moved")
	if _, err := s.Rename(RootIno, "a", moved.Ino, "a", 0); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("move a below a/moved: got %v, want EINVAL", err)
	}
	// Exchange two directories in different parents.
	if _, err := s.Rename(a.Ino, "b", RootIno, "empty", RenameExchange); err != nil {
		t.Fatalf("exchange dir and file across parents: %v", err)
	}
	if got, _ := s.Lookup(RootIno, "empty"); got.Ino != b.Ino {
		t.Errorf("after exchange root/empty is %d, want %d", got.Ino, b.Ino)
	}
	if _, err := s.Rename(RootIno, "empty", c.Ino, "x", 0); err != nil {
		// c is inside b, which is now root/empty: moving b into c must fail.
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("move b into its child c: got %v, want EINVAL", err)
		}
	} else {
		t.Errorf("move b into its child c succeeded, want EINVAL")
	}
}

func TestUnlinkedOpenFile(t *testing.T) {
	s := openStore(t, t.TempDir())
	f, err := s.CreateOpen(RootIno, "f", Node{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	s.AllocChunk(f.Ino, 0)
	before := s.Inodes()
	freed, err := s.Unlink(RootIno, "f", false)
	if err != nil || len(freed) != 0 {
		t.Fatalf("unlink open file: freed %v, %v; want nothing freed", freed, err)
	}
	a, err := s.Getattr(f.Ino)
	if err != nil || a.Nlink != 0 {
		t.Fatalf("open unlinked inode: %+v, %v; want nlink 0", a, err)
	}
	if _, err := s.Link(f.Ino, RootIno, "back"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("link an unlinked inode: got %v, want ENOENT", err)
	}
	if _, err := s.SetSize(f.Ino, 10, 1); err != nil {
		t.Errorf("write end on an open unlinked inode: %v", err)
	}
	if _, err := s.OpenInode(f.Ino); err != nil {
		t.Fatal(err)
	}
	if freed, err := s.ReleaseInode(f.Ino); err != nil || len(freed) != 0 {
		t.Errorf("first release: freed %v, %v; want nothing", freed, err)
	}
	freed, err = s.ReleaseInode(f.Ino)
	if err != nil || len(freed) != 1 {
		t.Errorf("last release: freed %v, %v; want the chunk", freed, err)
	}
	if _, err := s.Getattr(f.Ino); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("inode after last release: got %v, want ENOENT", err)
	}
	if got := s.Inodes(); got != before-1 {
		t.Errorf("inode count: got %d, want %d", got, before-1)
	}

	// Rename over an open file keeps it as well.
	g, _ := s.CreateOpen(RootIno, "g", Node{Mode: syscall.S_IFREG})
	mustCreate(t, s, RootIno, "h", syscall.S_IFREG)
	if _, err := s.Rename(RootIno, "h", RootIno, "g", 0); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Getattr(g.Ino); err != nil || a.Nlink != 0 {
		t.Errorf("renamed-over open file: %+v, %v; want it kept with nlink 0", a, err)
	}
}

func TestOrphansAfterReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	kept, _ := s.CreateOpen(RootIno, "kept", Node{Mode: syscall.S_IFREG})
	gone, _ := s.CreateOpen(RootIno, "gone", Node{Mode: syscall.S_IFREG})
	s.AllocChunk(gone.Ino, 0)
	s.Unlink(RootIno, "kept", false)
	s.Unlink(RootIno, "gone", false)
	n := s.Inodes()
	s.Close()
	s = openStore(t, dir)
	// A reconnecting client opens its handles again: the orphan stays.
	if _, err := s.OpenInode(kept.Ino); err != nil {
		t.Fatalf("reopen an orphan after restart: %v", err)
	}
	freed, err := s.PurgeOrphans()
	if err != nil || len(freed) != 1 {
		t.Errorf("purge: freed %v, %v; want the one chunk of the orphan nobody reopened", freed, err)
	}
	if _, err := s.Getattr(gone.Ino); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("unopened orphan after purge: got %v, want ENOENT", err)
	}
	if got := s.Inodes(); got != n-1 {
		t.Errorf("inodes after purge: got %d, want %d", got, n-1)
	}
	if freed, err := s.ReleaseInode(kept.Ino); err != nil || freed != nil {
		t.Errorf("release the reopened orphan: %v, %v", freed, err)
	}
	if _, err := s.Getattr(kept.Ino); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("reopened orphan after its last release: got %v, want ENOENT", err)
	}
}

func TestUpgradeFormat1(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Create(RootIno, "a", Node{Mode: syscall.S_IFDIR | 0o755})
	b, _ := s.Create(a.Ino, "b", Node{Mode: syscall.S_IFDIR | 0o755})
	// Make it look like a version 1 database: no parent keys, no format key.
	s.db.DeleteRange([]byte{pParent}, []byte{pParent + 1}, pebble.Sync)
	s.db.Delete([]byte("nformat"), pebble.Sync)
	s.Close()
	s = openStore(t, dir)
	if _, err := s.Rename(RootIno, "a", b.Ino, "a", 0); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("rename into own subtree after upgrade: got %v, want EINVAL", err)
	}
	if f, err := s.counter("format"); err != nil || f != FormatVersion {
		t.Errorf("format after upgrade: got %d, %v; want %d", f, err, FormatVersion)
	}
}

func TestXattrFlags(t *testing.T) {
	s := openStore(t, t.TempDir())
	f := mustCreate(t, s, RootIno, "f", syscall.S_IFREG)
	big := make([]byte, MaxXattrValue+1)
	long := string(make([]byte, MaxXattrName+1))
	tests := []struct {
		name  string
		attr  string
		value []byte
		flags uint32
		want  error
	}{
		{"replace missing", "user.a", []byte("1"), proto.XattrReplace, syscall.ENODATA},
		{"create", "user.a", []byte("1"), proto.XattrCreate, nil},
		{"create existing", "user.a", []byte("2"), proto.XattrCreate, syscall.EEXIST},
		{"replace", "user.a", []byte("3"), proto.XattrReplace, nil},
		{"value too big", "user.b", big, 0, syscall.E2BIG},
		{"name too long", long, []byte("x"), 0, syscall.ERANGE},
		{"empty name", "", []byte("x"), 0, syscall.ERANGE},
		{"largest value", "user.c", big[:MaxXattrValue], 0, nil},
		{"bad flags", "user.d", nil, 3, syscall.EINVAL},
	}
	for _, tt := range tests {
		err := s.SetXattr(f.Ino, tt.attr, tt.value, tt.flags)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	if v, err := s.GetXattr(f.Ino, "user.a"); err != nil || string(v) != "3" {
		t.Errorf("value after replace: got %q, %v; want 3", v, err)
	}
	if err := s.RemoveXattr(f.Ino, "user.nope"); !errors.Is(err, syscall.ENODATA) {
		t.Errorf("remove missing: got %v, want ENODATA", err)
	}
}
