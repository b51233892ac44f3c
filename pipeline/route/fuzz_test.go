package route

import (
	"errors"
	"strings"
	"testing"
)

// Parsing arbitrary text never panics; a success has every route fully built.
func FuzzParse(f *testing.F) {
	f.Add(okRoute)
	f.Add(matchYAML)
	f.Add("routes:\n  - &a {name: x}\n  - *a\n")
	f.Add("ignore: !!str x\n")
	f.Add("routes: [{match: {min_size: [1]}}]\n")
	f.Fuzz(func(t *testing.T, src string) {
		c, err := Parse("f.yaml", []byte(src))
		if err != nil {
			return
		}
		for _, r := range c.Routes {
			if r.out == nil || r.quar == nil || r.Name == "" {
				t.Fatalf("half-built route %+v", r)
			}
		}
	})
}

// Whatever the user, folders and name (a zip entry's name comes from the archive), a key is
// either refused or clean, under the route's prefix, and ignored as an input (no loops).
func FuzzOutputKey(f *testing.F) {
	c, err := Parse("m.yaml", []byte(matchYAML))
	if err != nil {
		f.Fatal(err)
	}
	r := c.Routes[1] // processed/{user}/{dir}/{stem}.jsonl
	f.Add("incoming/alice/a.csv", "", "")
	f.Add("incoming/alice/../../x.csv", "", "../a")
	f.Add("incoming/x/a.csv", "..", ".")
	f.Fuzz(func(t *testing.T, key, user, name string) {
		o := Object{Key: key, User: user}
		k, err := r.OutputKey(o, name, testTime)
		if err != nil {
			if !errors.Is(err, ErrBadKey) && !errors.Is(err, ErrNoUser) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if !strings.HasPrefix(k, "processed/") || strings.HasPrefix(k, "/") || strings.HasSuffix(k, "/") || strings.Contains(k, "//") {
			t.Fatalf("key %q", k)
		}
		for _, s := range strings.Split(k, "/") {
			if s == "." || s == ".." {
				t.Fatalf("key %q has %q", k, s)
			}
		}
		if !c.Ignored(k) {
			t.Fatalf("output %q would be routed again", k)
		}
	})
}
