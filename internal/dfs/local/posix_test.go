package local_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rampart-storage/rampart/internal/dfs/local/localtest"
)

// mountPair starts a local cluster and mounts it twice, through two clients
// (two master sessions), as two machines would.
func mountPair(t *testing.T) (a, b string) {
	t.Helper()
	_, mnts := localtest.Mounts(t, 2)
	return mnts[0], mnts[1]
}

// posixCase is one check of the conformance suite: run returns nil when the
// file system behaved as POSIX (and Linux) say.
type posixCase struct {
	name string
	run  func() error
}

// wantErr checks that err is want (nil for success).
func wantErr(what string, err, want error) error {
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		return fmt.Errorf("%s: got %v, want %v", what, err, want)
	}
	return nil
}

func readFile(p string, want string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if string(b) != want {
		return fmt.Errorf("%s holds %q, want %q", p, b, want)
	}
	return nil
}

func statOf(p string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// waitFor polls cond for up to 5 s (for effects that follow an asynchronous
// FUSE RELEASE).
func waitFor(what string, cond func() error) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s after 5s: %w", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPOSIXConformance(t *testing.T) {
	A, B := mountPair(t)
	a := func(s string) string { return filepath.Join(A, s) }
	b := func(s string) string { return filepath.Join(B, s) }
	write := func(p, s string) error { return os.WriteFile(p, []byte(s), 0o644) }

	cases := []posixCase{
		// Open flags.
		{"O_CREAT|O_EXCL creates", func() error {
			f, err := os.OpenFile(a("excl"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
			if err != nil {
				return err
			}
			return f.Close()
		}},
		{"O_CREAT|O_EXCL on an existing file: EEXIST", func() error {
			_, err := os.OpenFile(a("excl"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
			return wantErr("open", err, syscall.EEXIST)
		}},
		{"O_CREAT keeps an existing file's data", func() error {
			if err := write(a("keep"), "data"); err != nil {
				return err
			}
			f, err := os.OpenFile(a("keep"), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				return err
			}
			f.Close()
			return readFile(a("keep"), "data")
		}},
		{"O_TRUNC empties the file", func() error {
			f, err := os.OpenFile(a("keep"), os.O_TRUNC|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			f.Close()
			return readFile(a("keep"), "")
		}},
		{"O_APPEND writes at the end", func() error {
			if err := write(a("app"), "ab"); err != nil {
				return err
			}
			f, err := os.OpenFile(a("app"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			if _, err := f.Write([]byte("cd")); err != nil {
				return err
			}
			if _, err := f.WriteAt([]byte("x"), 0); err == nil {
				// Go refuses WriteAt on O_APPEND; use pwrite: Linux appends anyway.
				return errors.New("WriteAt on an O_APPEND file succeeded in Go")
			}
			if _, err := unix.Pwrite(int(f.Fd()), []byte("ef"), 0); err != nil {
				return err
			}
			f.Close()
			return readFile(a("app"), "abcdef")
		}},
		{"open of a missing file: ENOENT", func() error {
			_, err := os.Open(a("missing"))
			return wantErr("open", err, syscall.ENOENT)
		}},
		{"open a directory for writing: EISDIR", func() error {
			if err := os.Mkdir(a("dir"), 0o755); err != nil {
				return err
			}
			_, err := os.OpenFile(a("dir"), os.O_WRONLY, 0)
			return wantErr("open", err, syscall.EISDIR)
		}},
		{"create sets the mode bits (0640 is unchanged by umask 022)", func() error {
			st, err := statOf(a("excl"))
			if err != nil {
				return err
			}
			if st.Mode&0o7777 != 0o640 {
				return fmt.Errorf("mode %o, want 640", st.Mode&0o7777)
			}
			return nil
		}},
		// Truncate.
		{"ftruncate shrinks and grows with zeros", func() error {
			if err := write(a("tr"), "hello world"); err != nil {
				return err
			}
			if err := os.Truncate(a("tr"), 5); err != nil {
				return err
			}
			if err := readFile(a("tr"), "hello"); err != nil {
				return err
			}
			f, err := os.OpenFile(a("tr"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := f.Truncate(8); err != nil {
				return err
			}
			return readFile(a("tr"), "hello\x00\x00\x00")
		}},
		{"a write past the end after a shrink leaves zeros in the gap", func() error {
			if err := write(a("gap"), "abcdefgh"); err != nil {
				return err
			}
			if err := os.Truncate(a("gap"), 2); err != nil {
				return err
			}
			f, err := os.OpenFile(a("gap"), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			if _, err := f.WriteAt([]byte("Z"), 6); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			return readFile(b("gap"), "ab\x00\x00\x00\x00Z")
		}},
		{"truncate of a directory: EISDIR", func() error {
			return wantErr("truncate", os.Truncate(a("dir"), 0), syscall.EISDIR)
		}},
		// Hard links.
		{"link shares the inode and counts links", func() error {
			if err := os.Link(a("tr"), a("tr.link")); err != nil {
				return err
			}
			s1, _ := statOf(a("tr"))
			s2, err := statOf(a("tr.link"))
			if err != nil {
				return err
			}
			if s1.Ino != s2.Ino || s2.Nlink != 2 {
				return fmt.Errorf("link: inodes %d/%d nlink %d, want equal and 2", s1.Ino, s2.Ino, s2.Nlink)
			}
			return nil
		}},
		{"link over an existing name: EEXIST", func() error {
			return wantErr("link", os.Link(a("tr"), a("app")), syscall.EEXIST)
		}},
		{"link of a directory: EPERM", func() error {
			return wantErr("link", os.Link(a("dir"), a("dir.link")), syscall.EPERM)
		}},
		// Symlinks.
		{"symlink and readlink", func() error {
			if err := os.Symlink("tr", a("sym")); err != nil {
				return err
			}
			got, err := os.Readlink(a("sym"))
			if err != nil || got != "tr" {
				return fmt.Errorf("readlink: %q, %v; want tr", got, err)
			}
			st, err := statOf(a("sym"))
			if err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK || st.Size != 2 {
				return fmt.Errorf("lstat of symlink: %+v, %v", st, err)
			}
			return readFile(a("sym"), "hello\x00\x00\x00")
		}},
		{"symlink over an existing name: EEXIST", func() error {
			return wantErr("symlink", os.Symlink("x", a("tr")), syscall.EEXIST)
		}},
		{"readlink of a file: EINVAL", func() error {
			_, err := os.Readlink(a("tr"))
			return wantErr("readlink", err, syscall.EINVAL)
		}},
		// Attributes.
		{"chmod sets the mode and ctime", func() error {
			before, _ := statOf(a("tr"))
			time.Sleep(10 * time.Millisecond)
			if err := unix.Chmod(a("tr"), 0o4751); err != nil {
				return err
			}
			st, err := statOf(a("tr"))
			if err != nil {
				return err
			}
			if st.Mode&0o7777 != 0o4751 {
				return fmt.Errorf("mode %o, want 4751", st.Mode&0o7777)
			}
			if st.Ctim == before.Ctim {
				return errors.New("ctime unchanged by chmod")
			}
			return nil
		}},
		{"chown sets owner and group", func() error {
			if err := os.Lchown(a("tr"), 1234, 5678); err != nil {
				return err
			}
			st, err := statOf(a("tr"))
			if err != nil || st.Uid != 1234 || st.Gid != 5678 {
				return fmt.Errorf("after chown: %+v, %v; want 1234:5678", st, err)
			}
			return nil
		}},
		{"utimensat keeps nanoseconds", func() error {
			ts := []unix.Timespec{{Sec: 1600000000, Nsec: 123456789}, {Sec: 1700000000, Nsec: 987654321}}
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, a("tr"), ts, 0); err != nil {
				return err
			}
			st, err := statOf(a("tr"))
			if err != nil {
				return err
			}
			if st.Atim != ts[0] || st.Mtim != ts[1] {
				return fmt.Errorf("times %v %v, want %v %v", st.Atim, st.Mtim, ts[0], ts[1])
			}
			return nil
		}},
		{"utimensat UTIME_OMIT leaves atime", func() error {
			ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: 1700000001, Nsec: 5}}
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, a("tr"), ts, 0); err != nil {
				return err
			}
			st, err := statOf(a("tr"))
			if err != nil {
				return err
			}
			if st.Atim != (unix.Timespec{Sec: 1600000000, Nsec: 123456789}) || st.Mtim != ts[1] {
				return fmt.Errorf("times %v %v after UTIME_OMIT", st.Atim, st.Mtim)
			}
			return nil
		}},
		// Rename.
		{"rename a file over a file", func() error {
			if err := write(a("r1"), "one"); err != nil {
				return err
			}
			if err := write(a("r2"), "two"); err != nil {
				return err
			}
			if err := unix.Rename(a("r1"), a("r2")); err != nil {
				return err
			}
			if _, err := os.Stat(a("r1")); !errors.Is(err, syscall.ENOENT) {
				return fmt.Errorf("old name after rename: %v", err)
			}
			return readFile(a("r2"), "one")
		}},
		{"rename a directory over an empty directory", func() error {
			for _, d := range []string{"rd1", "rd2", "rd1/sub"} {
				if err := os.Mkdir(a(d), 0o755); err != nil {
					return err
				}
			}
			if err := unix.Rename(a("rd1"), a("rd2")); err != nil {
				return err
			}
			_, err := os.Stat(a("rd2/sub"))
			return err
		}},
		{"rename a directory over a non-empty one: ENOTEMPTY", func() error {
			if err := os.Mkdir(a("rd3"), 0o755); err != nil {
				return err
			}
			return wantErr("rename", unix.Rename(a("rd3"), a("rd2")), syscall.ENOTEMPTY)
		}},
		{"rename a file over a directory: EISDIR", func() error {
			return wantErr("rename", unix.Rename(a("r2"), a("rd3")), syscall.EISDIR)
		}},
		{"rename a directory over a file: ENOTDIR", func() error {
			return wantErr("rename", unix.Rename(a("rd3"), a("r2")), syscall.ENOTDIR)
		}},
		{"rename a directory into its own subtree: EINVAL", func() error {
			return wantErr("rename", unix.Rename(a("rd2"), a("rd2/sub/x")), syscall.EINVAL)
		}},
		{"rename into its own subtree through the other mount: EINVAL", func() error {
			// The other mount's kernel has no cached path to check: the master must.
			return wantErr("rename", unix.Rename(b("rd2"), b("rd2/sub/x")), syscall.EINVAL)
		}},
		{"RENAME_NOREPLACE over an existing name: EEXIST", func() error {
			err := unix.Renameat2(unix.AT_FDCWD, a("r2"), unix.AT_FDCWD, a("app"), unix.RENAME_NOREPLACE)
			return wantErr("renameat2", err, syscall.EEXIST)
		}},
		{"RENAME_NOREPLACE to a free name", func() error {
			if err := unix.Renameat2(unix.AT_FDCWD, a("r2"), unix.AT_FDCWD, a("r3"), unix.RENAME_NOREPLACE); err != nil {
				return err
			}
			return readFile(a("r3"), "one")
		}},
		{"RENAME_EXCHANGE swaps a file and a directory", func() error {
			if err := unix.Renameat2(unix.AT_FDCWD, a("r3"), unix.AT_FDCWD, a("rd3"), unix.RENAME_EXCHANGE); err != nil {
				return err
			}
			if err := readFile(a("rd3"), "one"); err != nil {
				return err
			}
			st, err := statOf(a("r3"))
			if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return fmt.Errorf("r3 after exchange: %+v, %v; want a directory", st, err)
			}
			return readFile(b("rd3"), "one")
		}},
		{"RENAME_EXCHANGE with a missing target: ENOENT", func() error {
			err := unix.Renameat2(unix.AT_FDCWD, a("r3"), unix.AT_FDCWD, a("nothing"), unix.RENAME_EXCHANGE)
			return wantErr("renameat2", err, syscall.ENOENT)
		}},
		// Unlink and rmdir.
		{"unlink of a missing name: ENOENT", func() error {
			return wantErr("unlink", os.Remove(a("missing")), syscall.ENOENT)
		}},
		{"rmdir of a non-empty directory: ENOTEMPTY", func() error {
			return wantErr("rmdir", syscall.Rmdir(a("rd2")), syscall.ENOTEMPTY)
		}},
		{"rmdir of a file: ENOTDIR", func() error {
			return wantErr("rmdir", syscall.Rmdir(a("app")), syscall.ENOTDIR)
		}},
		{"unlink of a directory: EISDIR", func() error {
			return wantErr("unlink", syscall.Unlink(a("r3")), syscall.EISDIR)
		}},
		{"unlinked-but-open file keeps working", func() error {
			f, err := os.OpenFile(a("open"), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.Write([]byte("before")); err != nil {
				return err
			}
			if err := os.Remove(b("open")); err != nil { // the other mount unlinks it
				return err
			}
			if _, err := f.Write([]byte(" after")); err != nil {
				return fmt.Errorf("write after unlink: %w", err)
			}
			var st unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Nlink != 0 || st.Size != 12 {
				return fmt.Errorf("fstat after unlink: %+v, %v; want nlink 0 size 12", st, err)
			}
			got := make([]byte, 12)
			if _, err := f.ReadAt(got, 0); err != nil || string(got) != "before after" {
				return fmt.Errorf("read after unlink: %q, %v", got, err)
			}
			return nil
		}},
		{"unlinked file's inode goes at the last close", func() error {
			f, err := os.Create(a("gone"))
			if err != nil {
				return err
			}
			st, _ := statOf(a("gone"))
			inodes := func() (uint64, error) {
				s, err := statfs(A)
				return s.Files - s.Ffree, err
			}
			n0, _ := inodes()
			os.Remove(a("gone"))
			if n, _ := inodes(); n != n0 {
				return fmt.Errorf("inodes %d after unlinking an open file, want %d (still there)", n, n0)
			}
			f.Close()
			_ = st
			return waitFor("inode count after the last close", func() error {
				if n, _ := inodes(); n != n0-1 {
					return fmt.Errorf("%d inodes, want %d", n, n0-1)
				}
				return nil
			})
		}},
		{"rename over an open file keeps the open file's data", func() error {
			if err := write(a("victim"), "old data"); err != nil {
				return err
			}
			f, err := os.Open(a("victim"))
			if err != nil {
				return err
			}
			defer f.Close()
			if err := write(a("newer"), "new"); err != nil {
				return err
			}
			if err := unix.Rename(b("newer"), b("victim")); err != nil {
				return err
			}
			got := make([]byte, 8)
			if _, err := f.ReadAt(got, 0); err != nil || string(got) != "old data" {
				return fmt.Errorf("read of the replaced file: %q, %v", got, err)
			}
			return readFile(b("victim"), "new")
		}},
		// Extended attributes.
		{"setxattr, getxattr, listxattr, removexattr", func() error {
			p := a("tr")
			if err := unix.Setxattr(p, "user.color", []byte("blue"), 0); err != nil {
				return err
			}
			if err := unix.Setxattr(p, "user.size", []byte("xl"), unix.XATTR_CREATE); err != nil {
				return err
			}
			buf := make([]byte, 64)
			n, err := unix.Getxattr(b("tr"), "user.color", buf)
			if err != nil || string(buf[:n]) != "blue" {
				return fmt.Errorf("getxattr from the other mount: %q, %v", buf[:n], err)
			}
			n, err = unix.Listxattr(p, buf)
			if err != nil {
				return err
			}
			names := strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00")
			if len(names) != 2 || names[0] != "user.color" || names[1] != "user.size" {
				return fmt.Errorf("listxattr: %q", names)
			}
			if err := unix.Removexattr(p, "user.size"); err != nil {
				return err
			}
			_, err = unix.Getxattr(p, "user.size", buf)
			return wantErr("getxattr after removexattr", err, syscall.ENODATA)
		}},
		{"XATTR_CREATE on an existing attribute: EEXIST", func() error {
			return wantErr("setxattr", unix.Setxattr(a("tr"), "user.color", []byte("red"), unix.XATTR_CREATE), syscall.EEXIST)
		}},
		{"XATTR_REPLACE on a missing attribute: ENODATA", func() error {
			return wantErr("setxattr", unix.Setxattr(a("tr"), "user.none", []byte("x"), unix.XATTR_REPLACE), syscall.ENODATA)
		}},
		{"getxattr into a small buffer: ERANGE; size query", func() error {
			_, err := unix.Getxattr(a("tr"), "user.color", make([]byte, 2))
			if err := wantErr("getxattr", err, syscall.ERANGE); err != nil {
				return err
			}
			n, err := unix.Getxattr(a("tr"), "user.color", nil)
			if err != nil || n != 4 {
				return fmt.Errorf("size query: %d, %v; want 4", n, err)
			}
			return nil
		}},
		{"xattr value over 64 KiB: E2BIG", func() error {
			return wantErr("setxattr", unix.Setxattr(a("tr"), "user.big", make([]byte, 65537), 0), syscall.E2BIG)
		}},
		// Space and special files.
		{"statfs reports chunkserver space and inodes", func() error {
			s, err := statfs(A)
			if err != nil {
				return err
			}
			if s.Blocks == 0 || s.Bfree > s.Blocks || s.Bavail > s.Blocks || s.Files <= s.Ffree || s.Bsize == 0 || s.Namelen != 255 {
				return fmt.Errorf("statfs: %+v", s)
			}
			return nil
		}},
		{"fallocate mode 0 extends, KEEP_SIZE does not", func() error {
			f, err := os.Create(a("falloc"))
			if err != nil {
				return err
			}
			defer f.Close()
			if err := unix.Fallocate(int(f.Fd()), 0, 0, 1<<20); err != nil {
				return err
			}
			if st, _ := f.Stat(); st.Size() != 1<<20 {
				return fmt.Errorf("size after fallocate: %d, want %d", st.Size(), 1<<20)
			}
			if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 2<<20); err != nil {
				return err
			}
			if st, _ := f.Stat(); st.Size() != 1<<20 {
				return fmt.Errorf("size after KEEP_SIZE: %d, want %d", st.Size(), 1<<20)
			}
			return nil
		}},
		{"fallocate PUNCH_HOLE: EOPNOTSUPP", func() error {
			f, err := os.OpenFile(a("falloc"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096)
			return wantErr("fallocate", err, syscall.EOPNOTSUPP)
		}},
		{"fallocate beyond the free space: ENOSPC", func() error {
			f, err := os.OpenFile(a("falloc"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			s, _ := statfs(A)
			err = unix.Fallocate(int(f.Fd()), 0, 0, int64(s.Blocks)*s.Bsize)
			return wantErr("fallocate", err, syscall.ENOSPC)
		}},
		{"mkfifo and mknod", func() error {
			if err := unix.Mkfifo(a("fifo"), 0o600); err != nil {
				return err
			}
			st, err := statOf(a("fifo"))
			if err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
				return fmt.Errorf("fifo: %+v, %v", st, err)
			}
			dev := unix.Mkdev(1, 3)
			if err := unix.Mknod(a("null"), unix.S_IFCHR|0o666, int(dev)); err != nil {
				return err
			}
			st, err = statOf(b("null"))
			if err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != dev {
				return fmt.Errorf("char device: %+v, %v; want rdev %d", st, err, dev)
			}
			return nil
		}},
		// Durability and visibility between mounts.
		{"fsync makes data visible to the other mount", func() error {
			f, err := os.Create(a("synced"))
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.Write([]byte("durable")); err != nil {
				return err
			}
			if err := f.Sync(); err != nil {
				return err
			}
			return readFile(b("synced"), "durable")
		}},
		{"close-to-open between mounts sees new data and size", func() error {
			if err := write(a("cto"), "first version"); err != nil {
				return err
			}
			if err := readFile(b("cto"), "first version"); err != nil {
				return err
			}
			if err := write(a("cto"), "second, longer version"); err != nil {
				return err
			}
			return readFile(b("cto"), "second, longer version")
		}},
		// Locks across the two mounts.
		{"fcntl locks conflict across mounts; F_GETLK names the holder", func() error {
			if err := write(a("lk"), "0123456789"); err != nil {
				return err
			}
			fa, err := os.OpenFile(a("lk"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer fa.Close()
			fb, err := os.OpenFile(b("lk"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer fb.Close()
			wl := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 5}
			if err := unix.FcntlFlock(fa.Fd(), unix.F_SETLK, &wl); err != nil {
				return err
			}
			rl := unix.Flock_t{Type: unix.F_RDLCK, Start: 2, Len: 1}
			if err := wantErr("F_SETLK over a's lock", unix.FcntlFlock(fb.Fd(), unix.F_SETLK, &rl), syscall.EAGAIN); err != nil {
				return err
			}
			q := unix.Flock_t{Type: unix.F_WRLCK, Start: 0, Len: 10}
			if err := unix.FcntlFlock(fb.Fd(), unix.F_GETLK, &q); err != nil {
				return err
			}
			if q.Type != unix.F_WRLCK || q.Start != 0 || q.Len != 5 || q.Pid != int32(os.Getpid()) {
				return fmt.Errorf("F_GETLK: %+v, want a write lock 0+5 by pid %d", q, os.Getpid())
			}
			if err := unix.FcntlFlock(fb.Fd(), unix.F_SETLK, &unix.Flock_t{Type: unix.F_WRLCK, Start: 5, Len: 5}); err != nil {
				return fmt.Errorf("disjoint range: %w", err)
			}
			// Closing any descriptor of the file releases the owner's locks.
			fa2, err := os.Open(a("lk"))
			if err != nil {
				return err
			}
			fa2.Close()
			return waitFor("lock after the holder's close", func() error {
				return unix.FcntlFlock(fb.Fd(), unix.F_SETLK, &unix.Flock_t{Type: unix.F_RDLCK, Start: 2, Len: 1})
			})
		}},
		{"F_SETLKW waits for the other mount's lock", func() error {
			fa, err := os.OpenFile(a("lk"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			fb, err := os.OpenFile(b("lk"), os.O_RDWR, 0)
			if err != nil {
				fa.Close()
				return err
			}
			defer fb.Close()
			if err := unix.FcntlFlock(fa.Fd(), unix.F_SETLK, &unix.Flock_t{Type: unix.F_WRLCK}); err != nil {
				fa.Close()
				return err
			}
			got := make(chan error, 1)
			start := time.Now()
			go func() { got <- unix.FcntlFlock(fb.Fd(), unix.F_SETLKW, &unix.Flock_t{Type: unix.F_WRLCK}) }()
			time.Sleep(300 * time.Millisecond)
			fa.Close()
			select {
			case err := <-got:
				if err != nil {
					return err
				}
				if time.Since(start) < 300*time.Millisecond {
					return errors.New("F_SETLKW returned before the holder closed")
				}
				return nil
			case <-time.After(10 * time.Second):
				return errors.New("F_SETLKW still blocked 10s after the holder closed")
			}
		}},
		{"flock conflicts across mounts and goes at close", func() error {
			fa, err := os.Open(a("lk"))
			if err != nil {
				return err
			}
			fb, err := os.Open(b("lk"))
			if err != nil {
				fa.Close()
				return err
			}
			defer fb.Close()
			if err := unix.Flock(int(fa.Fd()), unix.LOCK_EX); err != nil {
				fa.Close()
				return err
			}
			if err := wantErr("flock", unix.Flock(int(fb.Fd()), unix.LOCK_SH|unix.LOCK_NB), syscall.EWOULDBLOCK); err != nil {
				fa.Close()
				return err
			}
			fa.Close()
			return waitFor("flock after the holder's close", func() error {
				return unix.Flock(int(fb.Fd()), unix.LOCK_SH|unix.LOCK_NB)
			})
		}},
		{"rmdir of an empty directory and a read of what remains", func() error {
			if err := syscall.Rmdir(a("dir")); err != nil {
				return err
			}
			ents, err := os.ReadDir(B)
			if err != nil {
				return err
			}
			for _, e := range ents {
				if e.Name() == "dir" {
					return errors.New("removed directory still listed on the other mount")
				}
			}
			return nil
		}},
	}
	passed, failed := 0, 0
	for _, c := range cases {
		if err := c.run(); err != nil {
			failed++
			t.Errorf("FAIL %s: %v", c.name, err)
			continue
		}
		passed++
	}
	t.Logf("POSIX conformance: %d passed, %d failed of %d", passed, failed, len(cases))
}

// statfs is statfs(2). It is not retried on EINTR: a signal (the test's own
// goroutine preemption) interrupts the FUSE call, and the mount must finish
// it anyway (fusefs.patient; TestSignalsDoNotFailCalls).
func statfs(path string) (unix.Statfs_t, error) {
	var s unix.Statfs_t
	err := unix.Statfs(path, &s)
	return s, err
}
