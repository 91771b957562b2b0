package initiator

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/blockdev"
	"github.com/rampart-storage/rampart/internal/blockdev/blockdevtest"
	"github.com/rampart-storage/rampart/internal/iscsi"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in      string
		want    URL
		wantErr bool
	}{
		{in: "iscsi://10.3.1.1:3260/iqn.2024-03.org.clusterlab:storage.md0/0", want: URL{Portal: "10.3.1.1:3260", Target: "iqn.2024-03.org.clusterlab:storage.md0"}},
		{in: "iscsi://10.3.1.1/iqn.x:y/2", want: URL{Portal: "10.3.1.1:3260", Target: "iqn.x:y", LUN: 2}},
		{in: "iscsi://u%s3cret@[::1]:3261/iqn.x:y/1", want: URL{Portal: "[::1]:3261", Target: "iqn.x:y", LUN: 1, CHAP: &CHAP{User: "u", Secret: "s3cret"}}},
		{in: "iscsi://host/iqn.x:y", wantErr: true},
		{in: "iscsi://host/iqn.x:y/lun", wantErr: true},
		{in: "nbd://host/x/0", wantErr: true},
		{in: "iscsi://user:pw@host/iqn.x:y/0", want: URL{Portal: "host:3260", Target: "iqn.x:y", CHAP: &CHAP{User: "user", Secret: "pw"}}},
	}
	for _, tc := range tests {
		got, err := ParseURL(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseURL(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && (got.Portal != tc.want.Portal || got.Target != tc.want.Target || got.LUN != tc.want.LUN ||
			(got.CHAP == nil) != (tc.want.CHAP == nil) || (got.CHAP != nil && *got.CHAP != *tc.want.CHAP)) {
			t.Errorf("ParseURL(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseSendTargets(t *testing.T) {
	kvs := []iscsi.KV{
		{Key: "TargetName", Value: "iqn.a"}, {Key: "TargetAddress", Value: "10.3.1.1:3260,1"}, {Key: "TargetAddress", Value: "10.3.2.1:3260,2"},
		{Key: "TargetName", Value: "iqn.b"},
	}
	got, err := parseSendTargets(kvs, "10.3.1.1:3260")
	if err != nil || len(got) != 2 || len(got[0].Portals) != 2 || got[0].Portals[1] != (Portal{"10.3.2.1:3260", 2}) || got[1].Portals[0].Addr != "10.3.1.1:3260" {
		t.Errorf("parseSendTargets = %+v, %v", got, err)
	}
}

func TestSerialLess(t *testing.T) {
	tests := []struct {
		a, b uint32
		want bool
	}{{1, 2, true}, {2, 1, false}, {5, 5, false}, {0xfffffff0, 3, true}, {3, 0xfffffff0, false}}
	for _, tc := range tests {
		if got := serialLess(tc.a, tc.b); got != tc.want {
			t.Errorf("serialLess(%#x, %#x) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestAgainstExternalTarget runs the device suite over a LUN of a target named by
// RAMPART_TEST_ISCSI_URL (e.g. Debian's tgt; the LUN's data is overwritten).
func TestAgainstExternalTarget(t *testing.T) {
	url := os.Getenv("RAMPART_TEST_ISCSI_URL")
	if url == "" {
		t.Skip("RAMPART_TEST_ISCSI_URL not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	blockdevtest.Run(t, func(t *testing.T) blockdev.Device {
		d, err := OpenURL(ctx, url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		// the suite wants a zeroed device
		if err := blockdev.WriteZeroes(d, 0, min(d.Size(), 8<<20)); err != nil {
			t.Fatal(err)
		}
		if err := blockdev.WriteZeroes(d, d.Size()-1<<20, 1<<20); err != nil {
			t.Fatal(err)
		}
		return d
	})
	d, err := OpenURL(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer blockdev.Close(d)
	p := bytes.Repeat([]byte{0xa5}, 4<<20)
	if _, err := d.WriteAt(p, 0); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(p))
	if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("4 MiB read back: %v, equal %v", err, bytes.Equal(got, p))
	}
}
