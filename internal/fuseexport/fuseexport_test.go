package fuseexport

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/testutil"
)

// TestRootXFSOnExportedDevice is the seed's "XFS on mpatha": the device shown through
// FUSE gets a loop device, mkfs.xfs, a mount, and a file written and read back.
func TestRootXFSOnExportedDevice(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"losetup", "mkfs.xfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	mnt, fsmnt := filepath.Join(dir, "attach"), filepath.Join(dir, "xfs")
	os.Mkdir(mnt, 0o755)
	os.Mkdir(fsmnt, 0o755)
	dev := blockdev.NewMem(320<<20, 512)
	srv, err := Mount(mnt, "mpatha", dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount() })
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	loop := run("losetup", "-f", "--show", filepath.Join(mnt, "mpatha"))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	run("mkfs.xfs", "-q", "-f", loop)
	run("mount", loop, fsmnt)
	t.Cleanup(func() { exec.Command("umount", fsmnt).Run() })
	data := bytes.Repeat([]byte("seed lab "), 1<<20)
	if err := os.WriteFile(filepath.Join(fsmnt, "index.html"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	run("umount", fsmnt)
	run("mount", loop, fsmnt)
	got, err := os.ReadFile(filepath.Join(fsmnt, "index.html"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file on XFS over the FUSE-exported device: %v, equal %v", err, bytes.Equal(got, data))
	}
}
