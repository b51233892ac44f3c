// Package vpath is the path jail: it turns any path a client sends into a clean virtual path
// rooted at the user's home, and that into an object key under the home's prefix.
//
// Chroot semantics: ".." at the root stays at the root, so no input can name a key outside the
// home. Inputs S3 or clients cannot represent unambiguously are refused with
// storage.ErrInvalidPath: NUL and other control characters, bidirectional controls (U+202A-U+202E,
// U+2066-U+2069, U+200E, U+200F, U+061C: they make "invoice\u202Efdp.exe" display as
// "invoiceexe.pdf" in a listing), backslashes (a Windows client's
// separator, which S3 would store as a literal name), invalid UTF-8, components longer than
// MaxNameLen bytes and keys longer than MaxKeyLen bytes. Percent-escapes are not decoded:
// "%2f" is three literal characters of a name.
package vpath

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// Limits.
const (
	// MaxKeyLen is S3's limit on an object key, in bytes.
	MaxKeyLen = 1024
	// MaxNameLen is the usual file-system limit on one path component, in bytes.
	MaxNameLen = 255
	// maxInputLen bounds the work done on one client path (PATH_MAX); a longer input is refused
	// before it is parsed, whatever it would clean to.
	maxInputLen = 4096
)

// Clean returns the absolute, clean virtual path ("/", "/a/b") for a client path, relative
// paths being taken from the root.
func Clean(p string) (string, error) {
	if len(p) > maxInputLen {
		return "", invalid(p, "path longer than %d bytes", maxInputLen)
	}
	if err := checkChars(p); err != nil {
		return "", err
	}
	parts := make([]string, 0, strings.Count(p, "/")+1)
	for name := range strings.SplitSeq(p, "/") {
		switch name {
		case "", ".":
		case "..":
			if len(parts) > 0 {
				parts = parts[:len(parts)-1]
			}
		default:
			if len(name) > MaxNameLen {
				return "", invalid(p, "name longer than %d bytes", MaxNameLen)
			}
			parts = append(parts, name)
		}
	}
	clean := "/" + strings.Join(parts, "/")
	if len(clean)-1 > MaxKeyLen {
		return "", invalid(p, "path longer than %d bytes", MaxKeyLen)
	}
	return clean, nil
}

// Home normalises a home prefix: no leading slash, one trailing slash, or "" for the bucket
// root. A prefix with empty, "." or ".." components or characters Clean refuses is an error.
func Home(prefix string) (string, error) {
	trimmed := strings.Trim(prefix, "/")
	if trimmed == "" {
		return "", nil
	}
	if err := checkChars(trimmed); err != nil {
		return "", err
	}
	for name := range strings.SplitSeq(trimmed, "/") {
		if name == "" || name == "." || name == ".." || len(name) > MaxNameLen {
			return "", invalid(prefix, "bad home prefix component %q", name)
		}
	}
	if len(trimmed)+1 > MaxKeyLen {
		return "", invalid(prefix, "home prefix longer than %d bytes", MaxKeyLen)
	}
	return trimmed + "/", nil
}

// Key returns the object key for client path p under home (a prefix as Home returns it, or
// any prefix Home accepts). The home itself ("/") maps to home, which is "" for a bucket root.
func Key(home, p string) (string, error) {
	h, err := Home(home)
	if err != nil {
		return "", err
	}
	clean, err := Clean(p)
	if err != nil {
		return "", err
	}
	key := h + clean[1:]
	if len(key) > MaxKeyLen {
		return "", invalid(p, "key longer than %d bytes", MaxKeyLen)
	}
	return key, nil
}

// DirKey is Key for a directory: the key ends with "/" (the marker object's key and the
// prefix of everything inside), except for a bucket-root home, whose prefix is "".
func DirKey(home, p string) (string, error) {
	key, err := Key(home, p)
	if err != nil {
		return "", err
	}
	if key == "" || strings.HasSuffix(key, "/") {
		return key, nil
	}
	if len(key)+1 > MaxKeyLen {
		return "", invalid(p, "key longer than %d bytes", MaxKeyLen)
	}
	return key + "/", nil
}

// checkChars refuses invalid UTF-8, control characters, bidirectional controls and backslashes.
func checkChars(p string) error {
	if !utf8.ValidString(p) {
		return invalid(p, "invalid UTF-8")
	}
	for _, r := range p {
		switch {
		case r == '\\':
			return invalid(p, "backslash in path")
		case unicode.IsControl(r):
			return invalid(p, "control character %U in path", r)
		case unicode.Is(unicode.Bidi_Control, r):
			return invalid(p, "bidirectional control character %U in path", r)
		}
	}
	return nil
}

func invalid(p, format string, args ...any) error {
	if len(p) > 64 {
		p = p[:64] + "..."
	}
	return fmt.Errorf("%w: %q: %s", storage.ErrInvalidPath, p, fmt.Sprintf(format, args...))
}
