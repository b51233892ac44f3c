package datasize

import "testing"

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Size
		err  bool
	}{
		{"8MiB", 8 << 20, false},
		{"16 MiB", 16 << 20, false},
		{"1GiB", 1 << 30, false},
		{"512kib", 512 << 10, false},
		{"1.5GiB", 3 << 29, false},
		{"5MB", 5e6, false},
		{"1024", 1024, false},
		{"10B", 10, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"8 MiBs", 0, true},
		{"-1MiB", 0, true},
		{"8M", 0, true},
		{"99999999TiB", 0, true},
	} {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err=%v", tt.in, got, err, tt.want, tt.err)
		}
	}
	for s, want := range map[Size]string{8 * MiB: "8MiB", GiB: "1GiB", 1536 * KiB: "1536KiB", 1000: "1000B", 0: "0B"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", int64(s), s.String(), want)
		}
	}
}
