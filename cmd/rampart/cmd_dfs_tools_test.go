package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-storage/rampart/internal/dfs/client"
	"github.com/rampart-storage/rampart/internal/dfs/local"
	"github.com/rampart-storage/rampart/internal/dfs/proto"
)

func TestFSCheckfileAndDirinfo(t *testing.T) {
	ctx := t.Context()
	cl, err := local.Start(ctx, local.Config{Dir: t.TempDir(), Heartbeat: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c, err := client.Dial(ctx, cl.Master.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := c.Create(ctx, proto.RootIno, "d", proto.Node{Mode: syscall.S_IFDIR | 0o755})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Create(ctx, d.Ino, "a", proto.Node{Mode: syscall.S_IFREG | 0o644})
	if err := c.WriteAt(ctx, a.Ino, make([]byte, 100<<10), 0); err != nil {
		t.Fatal(err)
	}
	c.Create(ctx, d.Ino, "b", proto.Node{Mode: syscall.S_IFREG | 0o644})
	c.Create(ctx, d.Ino, "e", proto.Node{Mode: syscall.S_IFDIR | 0o755})
	if _, err := c.Link(ctx, a.Ino, d.Ino, "a.link"); err != nil {
		t.Fatal(err)
	}
	o := &fsOptions{master: cl.Master.ClientAddr(), json: true}

	var buf bytes.Buffer
	if err := runFSDirinfo(ctx, &buf, o, []string{"/d"}); err != nil {
		t.Fatal(err)
	}
	var di []dirinfoResult
	if err := json.Unmarshal(buf.Bytes(), &di); err != nil {
		t.Fatalf("dirinfo --json: %v in %s", err, buf.String())
	}
	want := dirinfoResult{Path: "/d", Inodes: 4, Directories: 2, Files: 2, Chunks: 1,
		Length: 100 << 10, Size: 128 << 10, RealSize: 256 << 10}
	if len(di) != 1 || di[0] != want {
		t.Errorf("dirinfo: got %+v, want %+v", di, want)
	}

	buf.Reset()
	if err := runFSCheckfile(ctx, &buf, o, []string{"/d/a", "/d/b"}); err != nil {
		t.Fatal(err)
	}
	var cf []checkfileResult
	if err := json.Unmarshal(buf.Bytes(), &cf); err != nil {
		t.Fatalf("checkfile --json: %v in %s", err, buf.String())
	}
	if len(cf) != 2 || cf[0].Chunks != 1 || cf[0].Copies["2"] != 1 || len(cf[0].Copies) != 1 || cf[1].Chunks != 0 {
		t.Errorf("checkfile: got %+v, want /d/a with one chunk of 2 copies and /d/b with none", cf)
	}

	buf.Reset()
	o.json = false
	if err := runFSCheckfile(ctx, &buf, o, []string{"/d/a"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "chunks with 2 copies:") {
		t.Errorf("checkfile text: got %q, want a line for chunks with 2 copies", buf.String())
	}
	if err := runFSCheckfile(ctx, &buf, o, []string{"/d"}); err == nil {
		t.Errorf("checkfile of a directory succeeded, want an error")
	}
}
