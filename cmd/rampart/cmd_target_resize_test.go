package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTargetBackstoreResize(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "target.yaml")
	img := filepath.Join(dir, "d0.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	mustTargetCLI(t, cfgPath, "backstore", "create", "d0", img)
	mustTargetCLI(t, cfgPath, "backstore", "create", "dev", "/dev/null")
	size := func() int64 {
		fi, err := os.Stat(img)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	tests := []struct {
		args     []string
		wantErr  string
		wantSize int64
	}{
		{[]string{"backstore", "resize", "d0", "4M"}, "", 4 << 20},
		{[]string{"backstore", "resize", "d0", "2M"}, "discards the data past the new end", 4 << 20},
		{[]string{"backstore", "resize", "d0", "2M", "--force"}, "", 2 << 20},
		{[]string{"backstore", "resize", "d0", "1000"}, "not a positive multiple of the 512-byte block size", 2 << 20},
		{[]string{"backstore", "resize", "d0", "lots"}, "size", 2 << 20},
		{[]string{"backstore", "resize", "dev", "1M"}, "is not a plain file", 2 << 20},
		{[]string{"backstore", "resize", "zz", "1M"}, `backstore "zz" does not exist`, 2 << 20},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[2:], " "), func(t *testing.T) {
			_, err := runTargetCLI(t, cfgPath, tt.args...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v, want success", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errUsage)):
				t.Fatalf("got error %v, want a usage error containing %q", err, tt.wantErr)
			}
			if got := size(); got != tt.wantSize {
				t.Errorf("got file size %d, want %d", got, tt.wantSize)
			}
			cfg := loadTargetConfig(t, cfgPath)
			if got := cfg.Backstore("d0").Size; tt.wantErr == "" && got != tt.wantSize {
				t.Errorf("got recorded size %d, want %d", got, tt.wantSize)
			}
		})
	}
}
