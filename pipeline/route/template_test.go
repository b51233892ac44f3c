package route

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2026, 11, 28, 23, 30, 0, 0, time.FixedZone("X", -3*3600)) // 2026-11-29 UTC

func TestSplitExt(t *testing.T) {
	for _, tt := range []struct{ name, stem, ext string }{
		{"a.csv", "a", ".csv"},
		{"archive.tar.gz", "archive.tar", ".gz"},
		{"README", "README", ""},
		{".env", ".env", ""},
		{".env.bak", ".env", ".bak"},
		{"trailing.", "trailing", "."},
		{"données été.csv", "données été", ".csv"},
		{"日本語.CSV", "日本語", ".CSV"},
		{"sub.d/file", "sub.d/file", ""},
		{"sub.d/file.txt", "sub.d/file", ".txt"},
		{"", "", ""},
	} {
		stem, ext := splitExt(tt.name)
		if stem != tt.stem || ext != tt.ext {
			t.Errorf("splitExt(%q) = %q, %q; want %q, %q", tt.name, stem, ext, tt.stem, tt.ext)
		}
		if stem+ext != tt.name {
			t.Errorf("splitExt(%q): stem+ext != name", tt.name)
		}
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		tpl  string
		v    vars
		want string
		err  error
	}{
		{"p/{user}/{dir}/{name}", vars{user: "alice", dir: "2026/01", name: "a.csv"}, "p/alice/2026/01/a.csv", nil},
		{"p/{user}/{dir}/{stem}.jsonl", vars{user: "alice", name: "a.csv"}, "p/alice/a.jsonl", nil}, // empty {dir} collapses
		{"p/{stem}{ext}", vars{name: "a.b.c"}, "p/a.b.c", nil},
		{"p/{stem}-x{ext}", vars{name: "README"}, "p/README-x", nil},
		{"p/{stem}.jsonl", vars{name: ".env"}, "p/.env.jsonl", nil},
		{"p/{date}/{name}", vars{name: "a", at: testTime}, "p/2026-11-29/a", nil},
		{"p/{user}/{name}", vars{user: "élise", name: "données été.csv"}, "p/élise/données été.csv", nil},
		{"p/{user}/{stem}.jsonl", vars{user: "山田", name: "売上.csv"}, "p/山田/売上.jsonl", nil},
		{"q/{user}/", vars{user: "bob", name: "bad.csv"}, "q/bob/bad.csv", nil},
		{"q/{user}/{dir}/", vars{user: "bob", name: "bad.csv"}, "q/bob/bad.csv", nil},
		{"p/{name}", vars{name: "sub/entry.csv"}, "p/sub/entry.csv", nil}, // zip entry with folders
		{"p/{name}", vars{name: "../../etc/passwd"}, "", ErrBadKey},
		{"p/{name}", vars{name: "a/./b"}, "", ErrBadKey},
		{"p/{dir}/{name}", vars{dir: "..", name: "a"}, "", ErrBadKey},
		{"p/{name}", vars{name: ".."}, "", ErrBadKey},
		{"p/{name}", vars{name: "a\x00b"}, "", ErrBadKey},
		{"p/{name}", vars{name: "\xff.csv"}, "", ErrBadKey},
		{"p/{name}", vars{name: ""}, "", ErrBadKey},
		{"p/{name}", vars{name: strings.Repeat("x", 1100)}, "", ErrBadKey},
		{"p/{user}/{name}", vars{name: "a"}, "", ErrNoUser},
		{"p/{name}", vars{name: "//a"}, "p/a", nil},
	}
	for _, tt := range tests {
		tp, err := parseTemplate(tt.tpl)
		if err != nil {
			t.Fatalf("%q: %v", tt.tpl, err)
		}
		got, err := tp.render(tt.v)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%q %+v: err = %v (key %q), want %v", tt.tpl, tt.v, err, got, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q %+v = %q, %v; want %q", tt.tpl, tt.v, got, err, tt.want)
		}
	}
}

func TestParseTemplateErrors(t *testing.T) {
	for _, tt := range []struct{ tpl, want string }{
		{"", "empty"},
		{"/abs/{name}", "starts with /"},
		{"p/{nam}", "unknown placeholder {nam}"},
		{"p/{USER}/{name}", "unknown placeholder {USER}"},
		{"p/{name", "unterminated"},
		{"p/name}", "unbalanced"},
		{"{user}/{name}", "fixed prefix"},
		{"p//{name}", "must be clean"},
		{"p/../{name}", "must be clean"},
		{"./{name}", "must be clean"},
	} {
		_, err := parseTemplate(tt.tpl)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseTemplate(%q) = %v, want error containing %q", tt.tpl, err, tt.want)
		}
	}
}

// OutputKey/QuarantineKey take {dir} below the user's folder, {name} from the chain's output.
func TestRouteKeys(t *testing.T) {
	c, err := Parse("m.yaml", []byte(matchYAML))
	if err != nil {
		t.Fatal(err)
	}
	csv, batch, shared := c.Routes[1], c.Routes[2], c.Routes[3]
	for _, tt := range []struct {
		r    *Route
		o    Object
		name string
		out  string
		quar string
	}{
		{csv, Object{Key: "incoming/alice/a.csv"}, "", "processed/alice/a.jsonl", "quarantine/alice/a.csv"},
		{csv, Object{Key: "incoming/alice/2026/q1/a.csv"}, "", "processed/alice/2026/q1/a.jsonl", "quarantine/alice/a.csv"},
		{csv, Object{Key: "incoming/alice/a.csv"}, "a.jsonl", "processed/alice/a.jsonl", "quarantine/alice/a.csv"},
		// metadata user other than the key's folder: {dir} is below the match prefix
		{csv, Object{Key: "incoming/team/x/a.csv", User: "bob"}, "", "processed/bob/team/x/a.jsonl", "quarantine/bob/a.csv"},
		{csv, Object{Key: "incoming/ünï/çödé.csv"}, "", "processed/ünï/çödé.jsonl", "quarantine/ünï/çödé.csv"},
		{batch, Object{Key: "drops/acme/2026/a.dat"}, "", "out/batch/acme/2026/a.dat", "quarantine/batch/acme/2026/a.dat"},
		{shared, Object{Key: "shared/NOEXT"}, "", "out/shared/2026-11-29/NOEXT", "quarantine/shared/NOEXT"},
		{shared, Object{Key: "shared/.hidden"}, "", "out/shared/2026-11-29/.hidden", "quarantine/shared/.hidden"},
		{shared, Object{Key: "shared/z.zip"}, "inner/e.csv", "out/shared/2026-11-29/inner/e.csv", "quarantine/shared/z.zip"},
	} {
		out, err := tt.r.OutputKey(tt.o, tt.name, testTime)
		if err != nil || out != tt.out {
			t.Errorf("%s.OutputKey(%q, %q) = %q, %v; want %q", tt.r.Name, tt.o.Key, tt.name, out, err, tt.out)
		}
		q, err := tt.r.QuarantineKey(tt.o, testTime)
		if err != nil || q != tt.quar {
			t.Errorf("%s.QuarantineKey(%q) = %q, %v; want %q", tt.r.Name, tt.o.Key, q, err, tt.quar)
		}
	}
	if _, err := shared.OutputKey(Object{Key: "shared/z.zip"}, "../../escape", testTime); !errors.Is(err, ErrBadKey) {
		t.Errorf("escaping zip entry: %v", err)
	}
}
