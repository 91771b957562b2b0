package volume_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/volume"
)

func TestKind(t *testing.T) {
	tests := []struct{ spec, want string }{
		{"/var/lib/disk.img", ""},
		{"disk.img", ""},
		{"./a:b", ""},
		{"raid:a,b,c", "raid"},
		{"iscsi://10.3.1.1:3260/iqn.x/0", "iscsi"},
		{"dfs://master/path", "dfs"},
	}
	for _, tc := range tests {
		if got := volume.Kind(tc.spec); got != tc.want {
			t.Errorf("Kind(%q) = %q, want %q", tc.spec, got, tc.want)
		}
	}
}

func TestOpenPlainAndRegistered(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "v.img")
	d, err := volume.Open(ctx, p, volume.Options{Create: true, Size: 1 << 20})
	if err != nil {
		t.Fatalf("Open(%q): %v", p, err)
	}
	if d.Size() != 1<<20 {
		t.Errorf("Size() = %d, want %d", d.Size(), 1<<20)
	}
	blockdev.Close(d)

	if _, err := volume.Open(ctx, "nosuchkind:x", volume.Options{}); !errors.Is(err, volume.ErrUnknownKind) {
		t.Errorf("Open of an unknown kind: got %v, want ErrUnknownKind", err)
	}
	volume.Register("memtest", func(ctx context.Context, spec string, opts volume.Options) (blockdev.Device, error) {
		return blockdev.NewMem(1<<20, 512), nil
	})
	if d, err := volume.Open(ctx, "memtest:x", volume.Options{}); err != nil || d.Size() != 1<<20 {
		t.Errorf("Open of a registered kind = %v, %v", d, err)
	}
}
