package vpath

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// FuzzKey checks the jail's promise for any home and path: an error, or a key under the home
// with no ".." segment, no empty segment and nothing Clean would refuse.
func FuzzKey(f *testing.F) {
	for _, seed := range []struct{ home, p string }{
		{"incoming/demo/", "../../x"},
		{"incoming/demo/", "/.."},
		{"incoming/demo/", "..\\..\\x"},
		{"incoming/demo/", "a\x00b"},
		{"incoming/demo/", "%2f..%2f..%2fx"},
		{"h/", "a/./b//../../../c/"},
		{"", "../x/.."},
		{"", "/"},
		{"a/b", "....//...//../."},
		{"h/", "\xc3\x28"},
		{"h/", "invoice\u202Efdp.exe"},
		{"h/", "a\u2066b\u2069/\u200e"},
		{"h\u061c/", "x"},
	} {
		f.Add(seed.home, seed.p)
	}
	f.Fuzz(func(t *testing.T, home, p string) {
		h, herr := Home(home)
		for _, get := range []func(string, string) (string, error){Key, DirKey} {
			key, err := get(home, p)
			if err != nil {
				if !errors.Is(err, storage.ErrInvalidPath) {
					t.Fatalf("error %v does not wrap ErrInvalidPath", err)
				}
				continue
			}
			if herr != nil {
				t.Fatalf("Key(%q, %q) = %q with an invalid home", home, p, key)
			}
			if !strings.HasPrefix(key, h) {
				t.Fatalf("Key(%q, %q) = %q escapes home %q", home, p, key, h)
			}
			if len(key) > MaxKeyLen || !utf8.ValidString(key) || strings.ContainsAny(key, "\\\x00") ||
				strings.ContainsFunc(key, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }) {
				t.Fatalf("Key(%q, %q) = %q is not a valid key", home, p, key)
			}
			if strings.Contains(key, "//") || strings.HasPrefix(key, "/") {
				t.Fatalf("Key(%q, %q) = %q has an empty segment", home, p, key)
			}
			for seg := range strings.SplitSeq(strings.TrimSuffix(key, "/"), "/") {
				if seg == ".." || seg == "." {
					t.Fatalf("Key(%q, %q) = %q has a %q segment", home, p, key, seg)
				}
			}
		}
		// Clean is idempotent and its output is absolute.
		if c, err := Clean(p); err == nil {
			if c2, err := Clean(c); err != nil || c2 != c || !strings.HasPrefix(c, "/") {
				t.Fatalf("Clean(%q) = %q, Clean again = %q, %v", p, c, c2, err)
			}
		}
	})
}
