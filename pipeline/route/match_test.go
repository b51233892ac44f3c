package route

import (
	"strings"
	"testing"
)

const matchYAML = `
ignore: ["*.filepart", "*.part", "*.tmp", "~*"]
datasets:
  d: {}
routes:
  - name: big-alice
    match: {prefix: incoming/, glob: "*.csv", user: alice, min_size: 1MiB}
    transforms: [{name: copy}]
    output: "big/{user}/{name}"
    quarantine: "quarantine/big/{user}/"
    dataset: d
  - name: csv
    match: {prefix: incoming/, glob: "*.csv", min_size: 1, max_size: 10MiB}
    transforms: [{name: csv-to-jsonl}]
    output: "processed/{user}/{dir}/{stem}.jsonl"
    quarantine: "quarantine/{user}/"
    dataset: d
  - name: batch
    match: {prefix: drops/}  # no glob: the marker check alone keeps markers out
    user_from_prefix: ""
    transforms: [{name: copy}]
    output: "out/batch/{dir}/{name}"
    quarantine: "quarantine/batch/{dir}/"
    dataset: d
    complete_on: {marker: "*.done"}
  - name: anything-shared
    match: {prefix: shared/}
    transforms: [{name: copy}]
    output: "out/shared/{date}/{name}"
    quarantine: "quarantine/shared/"
    dataset: d
`

func TestMatch(t *testing.T) {
	c, err := Parse("m.yaml", []byte(matchYAML))
	if err != nil {
		t.Fatal(err)
	}
	const MiB = 1 << 20
	tests := []struct {
		name string
		o    Object
		want string // route name, "" = none
	}{
		{"prefix and glob", Object{Key: "incoming/bob/a.csv", Size: 10}, "csv"},
		{"first match wins (alice, big)", Object{Key: "incoming/alice/a.csv", Size: 2 * MiB}, "big-alice"},
		{"alice small falls to next route", Object{Key: "incoming/alice/a.csv", Size: 10}, "csv"},
		{"user from metadata beats the key", Object{Key: "incoming/bob/a.csv", Size: 2 * MiB, User: "alice"}, "big-alice"},
		{"metadata user other than alice", Object{Key: "incoming/alice/a.csv", Size: 2 * MiB, User: "bob"}, "csv"},
		{"min size inclusive", Object{Key: "incoming/bob/a.csv", Size: 1}, "csv"},
		{"below min size", Object{Key: "incoming/bob/a.csv", Size: 0}, ""},
		{"max size inclusive", Object{Key: "incoming/bob/a.csv", Size: 10 * MiB}, "csv"},
		{"above max size", Object{Key: "incoming/bob/a.csv", Size: 10*MiB + 1}, ""},
		{"glob is on the name, not the path", Object{Key: "incoming/bob/x.csv/a.txt", Size: 10}, ""},
		{"glob is case sensitive", Object{Key: "incoming/bob/A.CSV", Size: 10}, ""},
		{"deeper folders", Object{Key: "incoming/bob/2026/01/a.csv", Size: 10}, "csv"},
		{"no user: directly under the prefix", Object{Key: "incoming/a.csv", Size: 10}, ""},
		{"empty user segment", Object{Key: "incoming//a.csv", Size: 10}, ""},
		{"other prefix", Object{Key: "elsewhere/bob/a.csv", Size: 10}, ""},
		{"prefix is not a substring match", Object{Key: "x/incoming/bob/a.csv", Size: 10}, ""},
		{"temp name .filepart", Object{Key: "incoming/bob/a.csv.filepart", Size: 10}, ""},
		{"temp name .part", Object{Key: "shared/a.part", Size: 10}, ""},
		{"temp name .tmp", Object{Key: "shared/a.tmp", Size: 10}, ""},
		{"configured ignore ~*", Object{Key: "shared/~lock.docx", Size: 10}, ""},
		{"ignore is on the name only", Object{Key: "shared/x.tmp/a.bin", Size: 10}, "anything-shared"},
		{"directory marker", Object{Key: "shared/dir/", Size: 0}, ""},
		{"directory marker with size", Object{Key: "incoming/bob/x.csv/", Size: 5}, ""},
		{"empty key", Object{Key: "", Size: 0}, ""},
		{"no glob: any name", Object{Key: "shared/a.bin", Size: 0}, "anything-shared"},
		{"batch data file", Object{Key: "drops/acme/a.dat", Size: 3}, "batch"},
		{"batch marker is not a data file", Object{Key: "drops/acme/batch.done", Size: 0}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := c.Match(tt.o)
			got := ""
			if ok {
				got = r.Name
			}
			if got != tt.want {
				t.Errorf("Match(%+v) = %q, want %q", tt.o, got, tt.want)
			}
		})
	}
}

// Keys under any route's output or quarantine prefix are never routed, even when another
// route's match would take them: a file the pipeline wrote cannot come back in.
func TestNoLoops(t *testing.T) {
	c, err := Parse("loop.yaml", []byte(`
datasets: {d: {}}
routes:
  - name: outputs-first
    match: {prefix: ""}
    user_from_prefix: "home/"
    transforms: [{name: copy}]
    output: "processed/{user}/{name}"
    quarantine: "quarantine/{user}/{name}"
    dataset: d
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		key     string
		ignored bool
	}{
		{"home/alice/a.csv", false},
		{"processed/alice/a.csv", true},
		{"processed/alice/deep/a.csv", true},
		{"quarantine/alice/a.csv", true},
		{"processed", false}, // not under "processed/"
		{"home/alice/a.csv.part", true},
		{"home/alice/", true},
	} {
		if got := c.Ignored(tt.key); got != tt.ignored {
			t.Errorf("Ignored(%q) = %v, want %v", tt.key, got, tt.ignored)
		}
		_, routed := c.Match(Object{Key: tt.key, Size: 1})
		if routed && tt.ignored {
			t.Errorf("%q routed", tt.key)
		}
	}
	// Every output and quarantine key a route builds is itself ignored.
	r := c.Routes[0]
	o := Object{Key: "home/alice/a.csv", Size: 1}
	for _, name := range []string{"", "x.jsonl", "sub/y.csv"} {
		k, err := r.OutputKey(o, name, testTime)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Ignored(k) {
			t.Errorf("output %q is not ignored", k)
		}
	}
	if k, err := r.QuarantineKey(o, testTime); err != nil || !c.Ignored(k) {
		t.Errorf("quarantine %q (%v) is not ignored", k, err)
	}
}

func TestIgnoreDefaultsAndEmpty(t *testing.T) {
	base := `
datasets: {d: {}}
routes:
  - name: r
    match: {prefix: in/}
    transforms: [{name: copy}]
    output: "out/{name}"
    quarantine: "q/"
    dataset: d
`
	c, err := Parse("a.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"in/a.filepart", "in/a.part", "in/a.tmp"} {
		if !c.Ignored(k) {
			t.Errorf("default: %s not ignored", k)
		}
	}
	c, err = Parse("b.yaml", []byte("ignore: []\n"+base))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := c.Match(Object{Key: "in/a.tmp"}); !ok || r.Name != "r" {
		t.Error("ignore: [] still ignores *.tmp")
	}
}

func TestMatchMarker(t *testing.T) {
	c, err := Parse("m.yaml", []byte(matchYAML))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		key  string
		want string
	}{
		{"drops/acme/batch.done", "batch"},
		{"drops/acme/a.dat", ""},
		{"incoming/bob/x.done", ""}, // that route has no complete_on
		{"drops/acme/x.done.tmp", ""},
	} {
		r, ok := c.MatchMarker(Object{Key: tt.key})
		got := ""
		if ok {
			got = r.Name
		}
		if got != tt.want {
			t.Errorf("MatchMarker(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestUserOf(t *testing.T) {
	c, err := Parse("m.yaml", []byte(matchYAML))
	if err != nil {
		t.Fatal(err)
	}
	csv, batch := c.Routes[1], c.Routes[2]
	for _, tt := range []struct {
		r    *Route
		o    Object
		want string
	}{
		{csv, Object{Key: "incoming/alice/a.csv"}, "alice"},
		{csv, Object{Key: "incoming/alice/x/y/a.csv"}, "alice"},
		{csv, Object{Key: "incoming/a.csv"}, ""},
		{csv, Object{Key: "incoming/alice/a.csv", User: "bob"}, "bob"},
		{csv, Object{Key: "other/alice/a.csv"}, ""},
		{batch, Object{Key: "drops/acme/a.dat"}, "drops"}, // user_from_prefix: "" -> first segment
		{csv, Object{Key: "incoming/élise/a.csv"}, "élise"},
	} {
		if got := tt.r.UserOf(tt.o); got != tt.want {
			t.Errorf("%s.UserOf(%+v) = %q, want %q", tt.r.Name, tt.o, got, tt.want)
		}
	}
}

// A route whose verify-checksum step has no expected digest reads "<input>.<algorithm>"
// sidecars: they are never routed as inputs themselves, even by a later route whose glob matches
// any name (catch-all below); a digest file that is no taken input's sidecar is an input as usual.
func TestSidecars(t *testing.T) {
	c, err := Parse("s.yaml", []byte(`
datasets: {d: {}}
routes:
  - name: signed
    match: {prefix: signed/}
    transforms: [{name: verify-checksum}, {name: copy}]
    output: "out/signed/{name}"
    quarantine: "q/signed/"
    dataset: d
  - name: pinned
    match: {prefix: pinned/}
    transforms: [{name: verify-checksum, options: {expected: "`+strings.Repeat("ab", 32)+`"}}]
    output: "out/pinned/{name}"
    quarantine: "q/pinned/"
    dataset: d
  - name: md5
    match: {prefix: md5/, glob: "*.dat"}
    transforms: [{name: verify-checksum, options: {algorithm: md5}}]
    output: "out/md5/{name}"
    quarantine: "q/md5/"
    dataset: d
  - name: catch-all
    match: {glob: "*"}
    user_from_prefix: ""
    transforms: [{name: copy}]
    output: "out/all/{name}"
    quarantine: "q/all/"
    dataset: d
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := [4]string{c.Routes[0].Sidecar, c.Routes[1].Sidecar, c.Routes[2].Sidecar, c.Routes[3].Sidecar}; got != [4]string{"sha256", "", "md5", ""} {
		t.Errorf("Sidecar = %q", got)
	}
	for _, tt := range []struct {
		key        string
		route      string // Match
		input, alg string // SidecarOf
	}{
		{"signed/a/x.csv", "signed", "", ""},
		{"signed/a/x.csv.sha256", "", "signed/a/x.csv", "sha256"},
		{"signed/a/x.csv.md5", "signed", "", ""}, // not this route's algorithm: an input like any
		{"pinned/x.csv.sha256", "pinned", "", ""},
		{"md5/x.dat", "md5", "", ""},
		{"md5/x.dat.md5", "", "md5/x.dat", "md5"},   // catch-all's glob matches it: still a sidecar
		{"md5/notes.md5", "catch-all", "", ""},      // md5 does not take "notes": not a sidecar
		{"md5/x.dat.md5.md5", "catch-all", "", ""},  // its input would be a sidecar, not taken
		{"other/x.csv.sha256", "catch-all", "", ""}, // no sidecar route takes other/x.csv
		{"other/x.csv", "catch-all", "", ""},
		{"out/all/x.csv.sha256", "", "", ""},      // an output: never routed
		{"signed/a/.sha256", "catch-all", "", ""}, // "signed/a/" is no input: not a sidecar
	} {
		got := ""
		if r, ok := c.Match(Object{Key: tt.key}); ok {
			got = r.Name
		}
		in, alg, _ := c.SidecarOf(Object{Key: tt.key})
		if got != tt.route || in != tt.input || alg != tt.alg {
			t.Errorf("%s: Match %q SidecarOf (%q, %q); want %q (%q, %q)", tt.key, got, in, alg, tt.route, tt.input, tt.alg)
		}
	}
}
