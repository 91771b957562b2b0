package multipath

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseBindings(t *testing.T) {
	got, err := ParseBindings([]byte("# comment\n\nmpatha 36001405aa # trailing\nmpio\t149455400000000000000000001000000c332000011000000\n"))
	want := []Binding{{"mpatha", "36001405aa"}, {"mpio", "149455400000000000000000001000000c332000011000000"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"mpatha\n", "mpatha 1 2\n", "mpatha 1\nmpatha 2\n", "a 1\nb 1\n", "../x 1\n"} {
		if _, err := ParseBindings([]byte(bad)); err == nil {
			t.Errorf("ParseBindings(%q): no error", bad)
		}
	}
}

func TestAliasName(t *testing.T) {
	for n, want := range map[int]string{0: "mpatha", 1: "mpathb", 25: "mpathz", 26: "mpathaa", 27: "mpathab", 52: "mpathba", 701: "mpathzz", 702: "mpathaaa"} {
		if got := aliasName("mpath", n); got != want {
			t.Errorf("aliasName(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestBind(t *testing.T) {
	file := filepath.Join(t.TempDir(), "etc", "bindings")
	step := func(alias, wwid, want string, wantErr error) {
		t.Helper()
		got, err := Bind(file, alias, wwid)
		if wantErr != nil {
			if !errors.Is(err, wantErr) {
				t.Errorf("Bind(%q, %q) error %v, want %v", alias, wwid, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Errorf("Bind(%q, %q) = %q, %v; want %q", alias, wwid, got, err, want)
		}
	}
	step("", "3600a", "mpatha", nil)         // user_friendly_names: first free
	step("", "3600b", "mpathb", nil)         // next free
	step("", "3600a", "mpatha", nil)         // the same LUN keeps its name
	step("data", "3600c", "data", nil)       // an explicit alias is recorded
	step("data", "3600c", "data", nil)       // and accepted again for its LUN
	step("data", "3600d", "", ErrAliasTaken) // never for another LUN
	if _, err := Bind(file, "mpathz", "3600a"); err == nil {
		t.Error("a second alias for a bound LUN: no error")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := ParseBindings(b)
	want := []Binding{{"mpatha", "3600a"}, {"mpathb", "3600b"}, {"data", "3600c"}}
	if err != nil || !reflect.DeepEqual(bs, want) {
		t.Errorf("file holds %+v, %v; want %+v", bs, err, want)
	}
}

// FuzzParseBindings: the decoder never panics, and what it accepts it reads the same
// when written back.
func FuzzParseBindings(f *testing.F) {
	f.Add([]byte("mpatha 36001405aa\n# c\nmpathb 36001405bb\n"))
	f.Add([]byte("x y z\n"))
	f.Add([]byte("\xff\x00 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		bs, err := ParseBindings(b)
		if err != nil {
			return
		}
		var out []byte
		for _, x := range bs {
			out = append(out, x.Alias+" "+x.WWID+"\n"...)
		}
		again, err := ParseBindings(out)
		if err != nil || !reflect.DeepEqual(again, bs) {
			t.Fatalf("round trip of %q: %+v, %v", out, again, err)
		}
	})
}
