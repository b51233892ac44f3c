package route

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
	"unicode/utf8"
)

// Placeholders a key template may use:
//
//	{user}  the uploader (object metadata x-amz-meta-ferry-user, else the key segment after user_from_prefix)
//	{dir}   the input's directory below the user's folder (below the match prefix when the user is not
//	        taken from the key), "" when the file sits directly there; may hold several segments
//	{name}  the file name (the transform's output name for outputs, the input's base name for quarantine)
//	{stem}  {name} without its extension; a dotfile's stem is the whole name (".env")
//	{ext}   the extension with its dot (".csv"), "" when there is none; {stem}{ext} == {name}
//	{date}  the processing day, UTC, as 2006-01-02
var placeholders = map[string]bool{"user": true, "dir": true, "name": true, "stem": true, "ext": true, "date": true}

// maxKeyLen is S3's limit on an object key, in bytes.
const maxKeyLen = 1024

// ErrBadKey is returned (wrapped) when a template renders to a key that is not clean: a ".." or "."
// segment, invalid UTF-8, a NUL, an empty key, a trailing "/", or one over 1024 bytes.
var ErrBadKey = errors.New("rendered key is not a clean object key")

// ErrNoUser is returned (wrapped) when a template needs {user} and the object has none.
var ErrNoUser = errors.New("template needs {user} but the object has no user")

// template is a parsed key template: literal text and placeholders, alternating.
type template struct {
	src   string
	parts []tplPart
}

type tplPart struct {
	lit string // literal text, when ph == ""
	ph  string
}

// parseTemplate checks a template's syntax: only known placeholders, balanced braces, no leading
// "/", and a literal prefix before the first placeholder (the loop guard: inputs under it never match).
func parseTemplate(src string) (*template, error) {
	if src == "" {
		return nil, errors.New("empty template")
	}
	if strings.HasPrefix(src, "/") {
		return nil, fmt.Errorf("template %q starts with /", src)
	}
	t := &template{src: src}
	rest := src
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			t.parts = append(t.parts, tplPart{lit: rest})
			break
		}
		if rest[i] == '}' {
			return nil, fmt.Errorf("template %q: unbalanced }", src)
		}
		if i > 0 {
			t.parts = append(t.parts, tplPart{lit: rest[:i]})
		}
		end := strings.IndexByte(rest[i:], '}')
		if end < 0 {
			return nil, fmt.Errorf("template %q: unterminated {", src)
		}
		name := rest[i+1 : i+end]
		if !placeholders[name] {
			return nil, fmt.Errorf("template %q: unknown placeholder {%s} (known: {user} {dir} {name} {stem} {ext} {date})", src, name)
		}
		t.parts = append(t.parts, tplPart{ph: name})
		rest = rest[i+end+1:]
	}
	if t.prefix() == "" {
		return nil, fmt.Errorf("template %q must start with a fixed prefix such as \"processed/\" (inputs under it are never routed, so outputs cannot loop)", src)
	}
	if k, err := cleanKey(t.prefix() + "x"); err != nil || k != t.prefix()+"x" {
		return nil, fmt.Errorf("template %q: its fixed prefix %q must be clean (no //, . or .. segments)", src, t.prefix())
	}
	return t, nil
}

// prefix is the literal text before the first placeholder.
func (t *template) prefix() string {
	if len(t.parts) > 0 && t.parts[0].ph == "" {
		return t.parts[0].lit
	}
	return ""
}

func (t *template) uses(ph string) bool {
	for _, p := range t.parts {
		if p.ph == ph {
			return true
		}
	}
	return false
}

// vars are the values placeholders expand to.
type vars struct {
	user, dir, name string
	at              time.Time
}

// render expands t and returns a clean key: empty segments (an empty {dir}) are collapsed, and a
// "." or ".." segment, invalid UTF-8 or NUL is an error (never resolved: a name that tries to
// climb out of its prefix is refused, not rewritten). A template ending in "/" is a prefix: the
// name is appended.
func (t *template) render(v vars) (string, error) {
	if t == nil {
		return "", errors.New("route: no template (the route was not built by Parse)")
	}
	if t.uses("user") && v.user == "" {
		return "", fmt.Errorf("%w: %q", ErrNoUser, t.src)
	}
	stem, ext := splitExt(v.name)
	var b strings.Builder
	for _, p := range t.parts {
		switch p.ph {
		case "":
			b.WriteString(p.lit)
		case "user":
			b.WriteString(v.user)
		case "dir":
			b.WriteString(v.dir)
		case "name":
			b.WriteString(v.name)
		case "stem":
			b.WriteString(stem)
		case "ext":
			b.WriteString(ext)
		case "date":
			b.WriteString(v.at.UTC().Format(time.DateOnly))
		}
	}
	raw := b.String()
	if strings.HasSuffix(raw, "/") {
		raw += v.name
	}
	return cleanKey(raw)
}

// cleanKey collapses empty segments and refuses anything that is not a plain object key.
func cleanKey(raw string) (string, error) {
	if !utf8.ValidString(raw) || strings.ContainsRune(raw, 0) {
		return "", fmt.Errorf("%w: %q has invalid UTF-8 or NUL", ErrBadKey, raw)
	}
	if strings.HasSuffix(raw, "/") {
		return "", fmt.Errorf("%w: %q ends with / (empty name)", ErrBadKey, raw)
	}
	segs := strings.Split(raw, "/")
	out := segs[:0]
	for _, s := range segs {
		switch s {
		case "":
			continue
		case ".", "..":
			return "", fmt.Errorf("%w: %q has a %q segment", ErrBadKey, raw, s)
		}
		out = append(out, s)
	}
	key := strings.Join(out, "/")
	if key == "" {
		return "", fmt.Errorf("%w: empty key", ErrBadKey)
	}
	if len(key) > maxKeyLen {
		return "", fmt.Errorf("%w: %d bytes, S3 allows %d", ErrBadKey, len(key), maxKeyLen)
	}
	return key, nil
}

// splitExt splits a name into stem and extension (with its dot). A leading dot is not an
// extension: ".env" -> (".env", ""), ".env.bak" -> (".env", ".bak"), "a.tar.gz" -> ("a.tar", ".gz").
func splitExt(name string) (stem, ext string) {
	base := path.Base("/" + name) // the last segment when the name holds a path (zip entries)
	if base == "/" {
		base = ""
	}
	i := strings.LastIndexByte(base, '.')
	if i <= 0 {
		return name, ""
	}
	cut := len(name) - (len(base) - i)
	return name[:cut], name[cut:]
}
