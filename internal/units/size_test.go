package units

import (
	"errors"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"4096", 4096},
		{"512B", 512},
		{"64K", 64 << 10},
		{"64k", 64 << 10},
		{"64KiB", 64 << 10},
		{"64KB", 64 << 10},
		{"10G", 10 << 30},
		{"10g", 10 << 30},
		{"1.5T", 3 << 39},
		{"2M", 2 << 20},
		{"1P", 1 << 50},
		{"7E", 7 << 60},
		{" 3G ", 3 << 30},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil {
			t.Errorf("ParseSize(%q): got error %v, want %d", tt.in, err, tt.want)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSize(%q): got %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParseSizeErrors(t *testing.T) {
	for _, in := range []string{"", "G", "-1", "-1G", "+5", "abc", "1.3", "1.0000001K", "8E", "16E", "99999999999999999999", "1X", "1e3", "NaN", "Inf", "0x10"} {
		got, err := ParseSize(in)
		if err == nil {
			t.Errorf("ParseSize(%q): got %d, want error", in, got)
			continue
		}
		if !errors.Is(err, ErrSize) {
			t.Errorf("ParseSize(%q): got error %v, want ErrSize", in, err)
		}
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0"},
		{512, "512"},
		{1024, "1K"},
		{1536, "1536"},
		{64 << 10, "64K"},
		{10 << 30, "10G"},
		{3 << 39, "1536G"},
		{1 << 40, "1T"},
		{-2048, "-2K"},
	}
	for _, tt := range tests {
		if got := FormatSize(tt.in); got != tt.want {
			t.Errorf("FormatSize(%d): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "64K", "10G", "1.5T", "-1", "8E", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d, want non-negative", s, n)
		}
		back, err := ParseSize(FormatSize(n))
		if err != nil || back != n {
			t.Fatalf("round trip %q: %d -> %q -> %d, %v", s, n, FormatSize(n), back, err)
		}
	})
}
