package strictyaml

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Addr    string        `yaml:"addr"`
	Timeout time.Duration `yaml:"timeout"`
	Count   int           `yaml:"count"`
	On      bool          `yaml:"on"`
}

type doc struct {
	Name   string         `yaml:"name"`
	Inner  inner          `yaml:"inner"`
	Tags   []string       `yaml:"tags"`
	Nets   []netip.Prefix `yaml:"nets"`
	Items  []inner        `yaml:"items"`
	Ptr    *inner         `yaml:"ptr"`
	hidden string
}

func defaults() doc { return doc{Name: "default", Inner: inner{Timeout: time.Minute, Count: 7}} }

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		src  string
		env  map[string]string
		want func(*doc)
		errs []string // each must appear, in this order, one per line of the joined error
	}{
		{
			name: "all kinds",
			src: `name: x
inner:
  addr: "127.0.0.1:1"
  timeout: 15m
  count: 3
  on: true
tags: [a, b]
nets: [10.0.0.0/8, "::1/128"]
items:
  - addr: a
  - {addr: b, count: 2}
ptr:
  count: 9
`,
			want: func(d *doc) {
				d.Name = "x"
				d.Inner = inner{Addr: "127.0.0.1:1", Timeout: 15 * time.Minute, Count: 3, On: true}
				d.Tags = []string{"a", "b"}
				d.Nets = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
				d.Items = []inner{{Addr: "a"}, {Addr: "b", Count: 2}}
				d.Ptr = &inner{Count: 9}
			},
		},
		{
			name: "null and empty keep defaults",
			src:  "name:\ninner:\n  # all commented out\n",
			want: func(*doc) {},
		},
		{
			name: "empty file keeps defaults",
			src:  "# nothing here\n",
			want: func(*doc) {},
		},
		{
			name: "anchors aliases and tags",
			src:  "inner: &i\n  addr: z\nptr: *i\nname: !!str 12\n",
			want: func(d *doc) { d.Inner.Addr = "z"; d.Ptr = &inner{Addr: "z"}; d.Name = "12" },
		},
		{
			name: "env expansion",
			src:  "name: \"${A}-${B}-$${LIT}\"\ninner:\n  count: ${N}\n",
			env:  map[string]string{"A": "x", "B": "", "N": "42"},
			want: func(d *doc) { d.Name = "x--${LIT}"; d.Inner.Count = 42 },
		},
		{
			name: "every problem with its line",
			src: `name: x
inner:
  adr: typo
  timeout: 15 minutes
  count: many
  on: yes please
tags: notalist
nets: [10.0.0.0/33]
colour: red
`,
			errs: []string{
				`f.yaml:3: inner: unknown key "adr" (did you mean "addr"?)`,
				`f.yaml:4: inner.timeout: invalid duration "15 minutes"`,
				`f.yaml:5: inner.count: expected a whole number, got "many"`,
				`f.yaml:6: inner.on: expected true or false, got "yes please"`,
				`f.yaml:7: tags: expected a list, got a single value`,
				`f.yaml:8: nets[0]: netip.ParsePrefix("10.0.0.0/33")`,
				`f.yaml:9: unknown key "colour"`,
			},
		},
		{
			name: "missing env vars all named",
			src:  "name: ${NOPE}\ninner:\n  addr: \"${ALSO_NOPE}:${NOPE}\"\n",
			env:  map[string]string{},
			errs: []string{
				"f.yaml:1: name: environment variable NOPE is not set",
				"f.yaml:3: inner.addr: environment variable ALSO_NOPE is not set",
				"f.yaml:3: inner.addr: environment variable NOPE is not set",
			},
		},
		{
			name: "malformed env reference",
			src:  "name: ${A:-x}\n",
			env:  map[string]string{},
			errs: []string{"f.yaml:1: name: invalid environment reference ${A:-x}"},
		},
		{
			name: "mapping where value expected and merge key",
			src:  "name:\n  a: b\nitems:\n  - <<: {addr: x}\n",
			errs: []string{
				"f.yaml:2: name: expected a single value, got a mapping",
				"f.yaml:4: items[0]: merge keys (<<) are not supported",
			},
		},
		{
			name: "syntax error has a line",
			src:  "name: x\ninner:\n  addr: [unclosed\n",
			errs: []string{"f.yaml:3: yaml: "},
		},
		{
			name: "duplicate key",
			src:  "name: a\nname: b\n",
			errs: []string{"f.yaml:2: yaml: mapping key \"name\" already defined"},
		},
		{
			name: "two documents",
			src:  "name: a\n---\nname: b\n",
			errs: []string{"only one YAML document"},
		},
		{
			name: "top level must be a mapping",
			src:  "- a\n- b\n",
			errs: []string{"f.yaml:1: expected a mapping"},
		},
		{
			name: "unexported and untagged fields are not keys",
			src:  "hidden: x\n",
			errs: []string{`f.yaml:1: unknown key "hidden"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := defaults()
			var lookup func(string) (string, bool)
			if tt.env != nil {
				lookup = env(tt.env)
			}
			_, err := Decode("f.yaml", []byte(tt.src), &got, Options{Lookup: lookup})
			if len(tt.errs) > 0 {
				if err == nil {
					t.Fatalf("no error, want %q", tt.errs)
				}
				lines := strings.Split(err.Error(), "\n")
				if len(lines) != len(tt.errs) {
					t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(tt.errs), err)
				}
				for i, want := range tt.errs {
					if !strings.HasPrefix(lines[i], want) && !strings.Contains(lines[i], want) {
						t.Errorf("problem %d = %q, want it to contain %q", i, lines[i], want)
					}
				}
				var p *Problem
				if !errors.As(err, &p) {
					t.Errorf("error %T does not hold a *Problem", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := defaults()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestPositions(t *testing.T) {
	src := "name: x\n\ninner:\n  count: 1\nitems:\n  - addr: a\n  - addr: b\n"
	var d doc
	pos, err := Decode("f.yaml", []byte(src), &d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{
		"name": 1, "inner": 3, "inner.count": 4, "items[1]": 7, "items[1].addr": 7,
		"inner.addr": 3, // not written: falls back to its parent
		"ptr.count":  0,
	} {
		if got := pos.Line(path); got != want {
			t.Errorf("Line(%q) = %d, want %d", path, got, want)
		}
	}
}

func TestExpand(t *testing.T) {
	lookup := env(map[string]string{"A": "1", "B_2": "two"})
	for _, tt := range []struct{ in, want, missing, err string }{
		{in: "plain $ and $A", want: "plain $ and $A"},
		{in: "${A}${B_2}", want: "1two"},
		{in: "$${A}", want: "${A}"},
		{in: "${X}${X}${Y}", missing: "X,Y"},
		{in: "${A", err: "unterminated"},
		{in: "${2A}", err: "invalid environment reference"},
	} {
		got, missing, err := expand(tt.in, lookup)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("expand(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || strings.Join(missing, ",") != tt.missing || (tt.missing == "" && got != tt.want) {
			t.Errorf("expand(%q) = %q, %v, %v; want %q, %q", tt.in, got, missing, err, tt.want, tt.missing)
		}
	}
}

func TestProblemFormat(t *testing.T) {
	for _, tt := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "a.yaml", Line: 3, Path: "x.y", Msg: "bad"}, "a.yaml:3: x.y: bad"},
		{Problem{File: "a.yaml", Path: "x", Msg: "bad"}, "a.yaml: x: bad"},
		{Problem{Msg: "bad"}, "bad"},
	} {
		if got := tt.p.Error(); got != tt.want {
			t.Errorf("%+v: got %q want %q", tt.p, got, tt.want)
		}
	}
}

// Maps accept any key; `any` values keep what was written, nested.
func TestDecodeMapsAndAny(t *testing.T) {
	type entry struct {
		Topic string         `yaml:"topic"`
		Opts  map[string]any `yaml:"opts"`
	}
	type file struct {
		Sets map[string]*entry `yaml:"sets"`
	}
	src := `sets:
  a:
    topic: t
    opts: {s: "x", n: 3, neg: -2, f: 1.5, b: true, l: [1, two], m: {k: v}, z: ~}
  empty:
  bad: {topik: y}
  worse: [1]
`
	var f file
	pos, err := Decode("m.yaml", []byte(src), &f, Options{})
	want := []string{
		`m.yaml:6: sets.bad: unknown key "topik" (did you mean "topic"?)`,
		`m.yaml:7: sets.worse: expected a mapping (key: value lines), got a list`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Fatalf("error:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	a := f.Sets["a"]
	wantOpts := map[string]any{"s": "x", "n": int64(3), "neg": int64(-2), "f": 1.5, "b": true,
		"l": []any{int64(1), "two"}, "m": map[string]any{"k": "v"}, "z": nil}
	if a == nil || a.Topic != "t" || !reflect.DeepEqual(a.Opts, wantOpts) {
		t.Fatalf("a = %+v", a)
	}
	if e, ok := f.Sets["empty"]; !ok || e != nil {
		t.Errorf("empty = %v, %v; want present and nil", e, ok)
	}
	if pos["sets.a.opts.l[1]"] != 4 || pos["sets.empty"] != 5 {
		t.Errorf("positions %v", pos)
	}
}
