package transform

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/ferrygw/ferry/pipeline/datasize"
)

// Factory builds a transform from its options. It reads options through o; any option it did
// not read is reported as unknown by Registry.New.
type Factory func(o *Options) (Transform, error)

// Registry maps step names to factories. The zero value is not usable; use NewRegistry or
// Default.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Register adds a transform under name; a name can be registered once.
func (r *Registry) Register(name string, f Factory) error {
	if name == "" || f == nil {
		return errors.New("transform: register: empty name or nil factory")
	}
	if _, ok := r.factories[name]; ok {
		return fmt.Errorf("transform: register %q: already registered", name)
	}
	r.factories[name] = f
	return nil
}

// Names lists the registered transforms, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New builds the transform for step. An unknown name, an unknown option or a bad option value
// is an error naming the step.
func (r *Registry) New(step Step) (Transform, error) {
	f, ok := r.factories[step.Name]
	if !ok {
		return nil, fmt.Errorf("transform %q: unknown transform (known: %v)", step.Name, r.Names())
	}
	o := &Options{m: step.Options, used: map[string]bool{}}
	t, err := f(o)
	if err == nil {
		err = o.unused()
	}
	if err = errors.Join(o.errs, err); err != nil {
		return nil, fmt.Errorf("transform %q: %w", step.Name, err)
	}
	return t, nil
}

// Default returns a registry holding every built-in transform.
func Default() *Registry {
	r := NewRegistry()
	for name, f := range map[string]Factory{
		"copy":            newCopy,
		"gunzip":          newGunzip,
		"unzip":           newUnzip,
		"charset":         newCharset,
		"newlines":        newNewlines,
		"csv-to-jsonl":    newCSVToJSONL,
		"validate-csv":    newValidateCSV,
		"verify-checksum": newVerifyChecksum,
	} {
		if err := r.Register(name, f); err != nil {
			panic(err) // a duplicate in the literal above: a programming error
		}
	}
	return r
}

// Options gives typed access to a step's options, as decoded from YAML (numbers may arrive as
// int, int64, uint64 or float64; lists as []any). Type errors accumulate and are reported by
// Registry.New together.
type Options struct {
	m    map[string]any
	used map[string]bool
	errs error
}

func (o *Options) get(key string) (any, bool) {
	o.used[key] = true
	v, ok := o.m[key]
	return v, ok && v != nil
}

func (o *Options) fail(key string, want string, v any) {
	o.errs = errors.Join(o.errs, fmt.Errorf("option %s: want %s, got %T %v", key, want, v, v))
}

// Has reports whether key was given.
func (o *Options) Has(key string) bool { _, ok := o.get(key); return ok }

// Raw returns key's value as decoded.
func (o *Options) Raw(key string) (any, bool) { return o.get(key) }

// String returns key as a string, or def.
func (o *Options) String(key, def string) string {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	s, ok := v.(string)
	if !ok {
		o.fail(key, "a string", v)
		return def
	}
	return s
}

// Int returns key as an integer, or def.
func (o *Options) Int(key string, def int64) int64 {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	case uint64:
		if n <= math.MaxInt64 {
			return int64(n)
		}
	case float64:
		if n == math.Trunc(n) && math.Abs(n) < 1<<62 {
			return int64(n)
		}
	}
	o.fail(key, "an integer", v)
	return def
}

// Size returns key as a number of bytes, or def: an integer, or a string with a unit as in
// the gateway's config ("16MiB", "1GiB").
func (o *Options) Size(key string, def int64) int64 {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	if s, isStr := v.(string); isStr {
		n, err := datasize.ParseSize(s)
		if err != nil {
			o.errs = errors.Join(o.errs, fmt.Errorf("option %s: %w", key, err))
			return def
		}
		return int64(n)
	}
	return o.Int(key, def)
}

// Bool returns key as a boolean, or def.
func (o *Options) Bool(key string, def bool) bool {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	b, ok := v.(bool)
	if !ok {
		o.fail(key, "true or false", v)
		return def
	}
	return b
}

// Strings returns key as a list of strings, or nil.
func (o *Options) Strings(key string) []string {
	v, ok := o.get(key)
	if !ok {
		return nil
	}
	return o.toStrings(key, v)
}

func (o *Options) toStrings(key string, v any) []string {
	switch l := v.(type) {
	case []string:
		return slices.Clone(l)
	case []any:
		out := make([]string, 0, len(l))
		for _, e := range l {
			s, ok := e.(string)
			if !ok {
				o.fail(key, "a list of strings", v)
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	o.fail(key, "a list of strings", v)
	return nil
}

func (o *Options) unused() error {
	var errs []error
	keys := make([]string, 0, len(o.m))
	for k := range o.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !o.used[k] {
			errs = append(errs, fmt.Errorf("unknown option %q", k))
		}
	}
	return errors.Join(errs...)
}
