package vpath

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

func TestClean(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen)
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "", want: "/"},
		{in: "/", want: "/"},
		{in: ".", want: "/"},
		{in: "..", want: "/"},
		{in: "/..", want: "/"},
		{in: "../../x", want: "/x"},
		{in: "/a/../../../b", want: "/b"},
		{in: "a/b/../c", want: "/a/c"},
		{in: "a//b///c/", want: "/a/b/c"},
		{in: "./a/./b/.", want: "/a/b"},
		{in: "...", want: "/..."},
		{in: ".. /x", want: "/.. /x"},
		{in: "%2f..%2fx", want: "/%2f..%2fx"},
		{in: "a/%2e%2e/b", want: "/a/%2e%2e/b"},
		{in: "día/ファイル.txt", want: "/día/ファイル.txt"},
		{in: "with space/x", want: "/with space/x"},
		{in: long, want: "/" + long},
		{in: long + "b", bad: true},
		{in: "a\\b", bad: true},
		{in: "..\\..\\x", bad: true},
		{in: "a\x00b", bad: true},
		{in: "a\nb", bad: true},
		{in: "a\x7fb", bad: true},
		{in: "a\u0085b", bad: true}, // C1 control
		// Bidirectional controls reorder how a name is shown: "invoice\u202Efdp.exe" reads as
		// "invoiceexe.pdf" in a listing.
		{in: "invoice\u202Efdp.exe", bad: true}, // RIGHT-TO-LEFT OVERRIDE
		{in: "a\u202Ab", bad: true},             // LEFT-TO-RIGHT EMBEDDING
		{in: "a\u202Bb", bad: true},             // RIGHT-TO-LEFT EMBEDDING
		{in: "a\u202Cb", bad: true},             // POP DIRECTIONAL FORMATTING
		{in: "a\u202Db", bad: true},             // LEFT-TO-RIGHT OVERRIDE
		{in: "a\u2066b", bad: true},             // LEFT-TO-RIGHT ISOLATE
		{in: "a\u2067b", bad: true},             // RIGHT-TO-LEFT ISOLATE
		{in: "a\u2068b", bad: true},             // FIRST STRONG ISOLATE
		{in: "a\u2069b", bad: true},             // POP DIRECTIONAL ISOLATE
		{in: "a\u200Eb", bad: true},             // LEFT-TO-RIGHT MARK
		{in: "a\u200Fb", bad: true},             // RIGHT-TO-LEFT MARK
		{in: "a\u061Cb", bad: true},             // ARABIC LETTER MARK
		{in: "dir\u202E/x", bad: true},
		{in: "عربي/ملف.txt", want: "/عربي/ملف.txt"}, // right-to-left letters themselves are fine
		{in: "a\u200Db", want: "/a\u200Db"},         // ZERO WIDTH JOINER (emoji sequences) is not a bidi control
		{in: "a\xffb", bad: true},
		{in: strings.Repeat("abcdefgh/", 113) + "abcdefgh", bad: true}, // 1025-byte key
		{in: strings.Repeat("abcdefgh/", 113) + "abcdefg", want: "/" + strings.Repeat("abcdefgh/", 113) + "abcdefg"}, // 1024
		{in: strings.Repeat("a/../", 900), bad: true},                                                                // longer than any path we parse
	}
	for _, tt := range tests {
		got, err := Clean(tt.in)
		if tt.bad {
			if !errors.Is(err, storage.ErrInvalidPath) {
				t.Errorf("Clean(%q) = %q, %v; want ErrInvalidPath", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Clean(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestHome(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "", want: ""},
		{in: "/", want: ""},
		{in: "incoming/demo", want: "incoming/demo/"},
		{in: "/incoming/demo/", want: "incoming/demo/"},
		{in: "a//b", bad: true},
		{in: "a/../b", bad: true},
		{in: "./a", bad: true},
		{in: "a\\b", bad: true},
		{in: "a\x00", bad: true},
	}
	for _, tt := range tests {
		got, err := Home(tt.in)
		if tt.bad {
			if !errors.Is(err, storage.ErrInvalidPath) {
				t.Errorf("Home(%q) = %q, %v; want ErrInvalidPath", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Home(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		home, in    string
		key, dirKey string
		bad         bool
	}{
		{home: "incoming/demo/", in: "/", key: "incoming/demo/", dirKey: "incoming/demo/"},
		{home: "incoming/demo/", in: "../../etc/passwd", key: "incoming/demo/etc/passwd", dirKey: "incoming/demo/etc/passwd/"},
		{home: "incoming/demo", in: "a/b", key: "incoming/demo/a/b", dirKey: "incoming/demo/a/b/"},
		{home: "", in: "/", key: "", dirKey: ""},
		{home: "", in: "../x", key: "x", dirKey: "x/"},
		{home: "h/", in: "/..", key: "h/", dirKey: "h/"},
		{home: "h/", in: "%2f..%2fsibling", key: "h/%2f..%2fsibling", dirKey: "h/%2f..%2fsibling/"},
		{home: "h/", in: "a\\..\\..\\x", bad: true},
		{home: "../h/", in: "x", bad: true},
		// The home prefix counts towards the key limit.
		{home: strings.Repeat("h", 200) + "/", in: strings.Repeat("abcdefgh/", 100), bad: true},
		// A dir key one byte past the limit.
		{home: "", in: strings.Repeat("abcdefgh/", 113) + "abcdefg", key: strings.Repeat("abcdefgh/", 113) + "abcdefg", bad: true},
	}
	for _, tt := range tests {
		key, err := Key(tt.home, tt.in)
		dirKey, dirErr := DirKey(tt.home, tt.in)
		if tt.bad {
			if tt.key != "" {
				if err != nil || key != tt.key {
					t.Errorf("Key(%q, %q) = %q, %v; want %q", tt.home, tt.in, key, err, tt.key)
				}
			} else if !errors.Is(err, storage.ErrInvalidPath) {
				t.Errorf("Key(%q, %q) = %q, %v; want ErrInvalidPath", tt.home, tt.in, key, err)
			}
			if !errors.Is(dirErr, storage.ErrInvalidPath) {
				t.Errorf("DirKey(%q, %q) = %q, %v; want ErrInvalidPath", tt.home, tt.in, dirKey, dirErr)
			}
			continue
		}
		if err != nil || key != tt.key {
			t.Errorf("Key(%q, %q) = %q, %v; want %q", tt.home, tt.in, key, err, tt.key)
		}
		if dirErr != nil || dirKey != tt.dirKey {
			t.Errorf("DirKey(%q, %q) = %q, %v; want %q", tt.home, tt.in, dirKey, dirErr, tt.dirKey)
		}
	}
}
