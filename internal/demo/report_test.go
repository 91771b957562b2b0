package demo

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestFormatLsblkDrawsTheTree(t *testing.T) {
	var b bytes.Buffer
	FormatLsblk(&b, []BlockNode{
		{Name: "mpatha", Size: 512 << 20, Type: "mpath", Children: []BlockNode{
			{Name: "loop0", Size: 512 << 20, Type: "loop", Mount: "/mnt/data_chunk1"},
			{Name: "loop1", Size: 1 << 30, Type: "loop", Children: []BlockNode{{Name: "x", Size: 1536, Type: "part"}}},
		}},
	})
	want := `NAME     SIZE  TYPE   MOUNTPOINTS
mpatha   512M  mpath  
├─loop0  512M  loop   /mnt/data_chunk1
└─loop1  1.0G  loop   
  └─x    1.5K  part   
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestFormatDF(t *testing.T) {
	var b bytes.Buffer
	FormatDF(&b, []DFRow{
		{FS: "/dev/loop2", Mount: "/mnt/data_chunk1", Size: 444 << 20, Used: 29 << 20, Avail: 415 << 20},
		{FS: "empty", Mount: "/e"},
	})
	want := `Filesystem  Size  Used  Avail  Use%  Mounted on
/dev/loop2  444M  29M   415M   7%    /mnt/data_chunk1
empty       0     0     0      -     /e
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestHumanSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0"}, {1023, "1023"}, {1024, "1.0K"}, {10 << 10, "10K"}, {532676608, "508M"}, {40 << 30, "40G"},
	} {
		if got := humanSize(tc.n); got != tc.want {
			t.Errorf("humanSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestIndentPrefixesEveryLine(t *testing.T) {
	var b bytes.Buffer
	w := indent(&b)
	w.Write([]byte("a\nb"))
	w.Write([]byte("c\n\nd\n"))
	if got, want := b.String(), "    a\n    bc\n    \n    d\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseMountsUnder(t *testing.T) {
	mi := strings.Join([]string{
		`22 1 0:21 / / rw - ext4 /dev/sda1 rw`,
		`40 22 0:40 / /demo/chunk1/lun rw - fuse rampart rw`,
		`41 22 7:0 / /demo/chunk1/mnt/data_chunk1 rw - xfs /dev/loop0 rw`,
		`42 22 0:41 / /demo/web/mnt/my\040www rw - fuse rampart rw`,
		`43 22 0:42 / /demo2/x rw - tmpfs t rw`,
		`44 41 0:43 / /demo/chunk1/mnt/data_chunk1/deeper rw - tmpfs t rw`,
	}, "\n")
	got := parseMountsUnder(mi, "/demo/")
	want := []string{"/demo/chunk1/mnt/data_chunk1/deeper", "/demo/chunk1/mnt/data_chunk1", "/demo/web/mnt/my www", "/demo/chunk1/lun"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q (deepest first, not /demo2)", got, want)
	}
}

func TestLeftoversString(t *testing.T) {
	if s := (Leftovers{}).String(); s != "nothing" || !(Leftovers{}).Empty() {
		t.Errorf("empty leftovers: %q", s)
	}
	l := Leftovers{Namespaces: []string{"rampart-web"}, Loops: []Loop{{Dev: "/dev/loop3", File: "/d/f"}}, Processes: []Process{{Role: "master", Pid: 9}}}
	if got, want := l.String(), "namespaces rampart-web; loop /dev/loop3 over /d/f; process 9 (master)"; got != want || l.Empty() {
		t.Errorf("got %q, want %q", got, want)
	}
}
