// Package route decides which admin-configured route applies to an object that arrived in the
// bucket: a match (key prefix, glob on the name, user, size bounds) selects the first route, whose
// ordered transforms turn it into output keys built from a template, announced to a dataset's
// audience, with a quarantine for files that fail validation.
//
// Routes are written in YAML (configs/pipeline.yaml), decoded strictly: an unknown key is an error
// and every problem is reported at once as "file:line: path: reason", by the same decoder as the
// gateway's config (pipeline/strictyaml), whose line of every key serves the semantic checks
// (globs, templates, transforms against the transform registry, datasets).
//
// The uploader of an object is the gateway's metadata (x-amz-meta-ferry-user, passed in
// Object.User) when present, else the key segment after the route's user_from_prefix (which
// defaults to match.prefix): "incoming/alice/a.csv" -> "alice". A route whose match.user or
// templates need a user does not select an object that has none.
//
// No loops: keys under the fixed prefix of any route's output or quarantine template (the text
// before its first placeholder, which every template must have) are never routed, nor are
// directory markers and temporary names (Config.Ignore). Rendered keys are clean: "." and ".."
// segments are refused, never resolved.
package route

import (
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ferrygw/ferry/pipeline/notify"
	"github.com/ferrygw/ferry/pipeline/strictyaml"
	"github.com/ferrygw/ferry/pipeline/transform"
)

// DefaultIgnore are the temporary names clients write before renaming (WinSCP's .filepart,
// FileZilla's and lftp's .part, many tools' .tmp), used when the file has no ignore key.
var DefaultIgnore = []string{"*.filepart", "*.part", "*.tmp"}

// Config is a loaded, validated routes file.
type Config struct {
	File     string             // where it was read from, for messages
	Ignore   []string           // globs on the base name of keys that are never routed
	Datasets map[string]Dataset // by name
	Routes   []*Route           // in file order: the first that matches wins
}

// Dataset is an audience for notifications: who is told when a route's files are processed.
type Dataset struct {
	Name string
	// Topic is the SNS topic ARN the notify handler publishes to; empty means the deployment's
	// default (the local sink in the embedded default).
	Topic string
	// Attributes are extra SNS message attributes (string values) sent with every notification,
	// beside the dataset, user, status, route and kind the notify handler always sets.
	Attributes map[string]string
	// Templates write the dataset's notices: the built-ins of its language (en, es) with the
	// dataset's own templates in their place. Never nil in a loaded Config.
	Templates *notify.Templates
	// LinkExpiry is how long the pre-signed download links in its notices are valid; 0 (the
	// default): notices carry no links.
	LinkExpiry time.Duration
}

// MaxLinkExpiry is the longest a pre-signed S3 URL can be valid (SigV4: 7 days).
const MaxLinkExpiry = 7 * 24 * time.Hour

// Match selects the objects a route applies to. Empty fields match everything.
type Match struct {
	Prefix  string // the key starts with it
	Glob    string // path.Match pattern on the key's base name, e.g. "*.csv"
	User    string // the uploader (see Route.UserOf)
	MinSize Size   // inclusive
	MaxSize Size   // inclusive; 0 = no upper bound
}

// CompleteOn holds a route's files until a marker file arrives (batch completion).
type CompleteOn struct {
	Marker string // path.Match pattern on the marker's base name, e.g. "*.done"
}

// Route is one rule: which objects, which transforms, where outputs and rejects go, who is told.
type Route struct {
	Name  string
	Match Match
	// UserFromPrefix: when an object carries no user in its metadata, the user is the key segment
	// right after this prefix ("incoming/alice/x.csv" -> "alice"). Defaults to Match.Prefix.
	UserFromPrefix string
	Steps          []transform.Step // in order; each built by the registry at load
	Output         string           // key template for each output file
	Quarantine     string           // key template (or prefix ending in "/") for a rejected input
	Dataset        string
	Topic          string            // the dataset's topic
	Attributes     map[string]string // the dataset's attributes
	CompleteOn     *CompleteOn       // nil: each file completes on its own
	// Sidecar is the digest algorithm ("sha256" or "md5") when a verify-checksum step takes its
	// expected digest from a sidecar object: the input's key plus "."+Sidecar ("a.csv.sha256").
	// The input waits for its sidecar; the sidecar itself is never routed as an input.
	Sidecar string

	out, quar *template
	needsUser bool
}

// file* are the YAML shapes; see configs/pipeline.yaml for what each key means.
type fileConfig struct {
	Ignore   *[]string               `yaml:"ignore"`
	Datasets map[string]*fileDataset `yaml:"datasets"`
	Routes   []*fileRoute            `yaml:"routes"`
}

type fileDataset struct {
	Topic         string            `yaml:"topic"`
	Attributes    map[string]string `yaml:"attributes"`
	Language      string            `yaml:"language"`
	Templates     *fileTemplates    `yaml:"templates"`
	DownloadLinks *fileLinks        `yaml:"download_links"`
}

type fileTemplates struct {
	Processed *fileTemplate `yaml:"processed"`
	Rejected  *fileTemplate `yaml:"rejected"`
	Batch     *fileTemplate `yaml:"batch"`
}

type fileTemplate struct {
	Subject string `yaml:"subject"`
	Body    string `yaml:"body"`
	SMS     string `yaml:"sms"`
}

type fileLinks struct {
	Expires time.Duration `yaml:"expires"`
}

type fileRoute struct {
	Name           string          `yaml:"name"`
	Match          fileMatch       `yaml:"match"`
	UserFromPrefix *string         `yaml:"user_from_prefix"`
	Transforms     []fileStep      `yaml:"transforms"`
	Output         string          `yaml:"output"`
	Quarantine     string          `yaml:"quarantine"`
	Dataset        string          `yaml:"dataset"`
	CompleteOn     *fileCompleteOn `yaml:"complete_on"`
}

type fileMatch struct {
	Prefix  string `yaml:"prefix"`
	Glob    string `yaml:"glob"`
	User    string `yaml:"user"`
	MinSize *Size  `yaml:"min_size"`
	MaxSize *Size  `yaml:"max_size"`
}

type fileStep struct {
	Name    string         `yaml:"name"`
	Options map[string]any `yaml:"options"`
}

type fileCompleteOn struct {
	Marker string `yaml:"marker"`
}

// Load reads and parses a routes file, checking transforms against transform.Default().
func Load(file string) (*Config, error) { return LoadWith(file, transform.Default()) }

// LoadWith is Load with the registry a deployment runs (one with extra transforms).
func LoadWith(file string, reg *transform.Registry) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("route: load: %w", err)
	}
	return ParseWith(file, data, reg)
}

// Parse decodes and validates a routes file (named file in messages), checking every transform
// step (name and options) against transform.Default(). The error joins a *Problem for everything
// wrong, ordered by line.
func Parse(file string, data []byte) (*Config, error) {
	return ParseWith(file, data, transform.Default())
}

// ParseWith is Parse with the registry a deployment runs.
func ParseWith(file string, data []byte, reg *transform.Registry) (*Config, error) {
	var fc fileConfig
	pos, derr := strictyaml.Decode(file, data, &fc, strictyaml.Options{})
	ps := &problems{file: file, data: data, pos: pos}
	if derr != nil {
		var u interface{ Unwrap() []error }
		if !errors.As(derr, &u) {
			return nil, derr
		}
		ps.decoding = u.Unwrap()
		for _, e := range ps.decoding {
			var p *Problem
			if !errors.As(e, &p) || p.Line == 0 && p.Path == "" {
				return nil, derr // syntax: nothing was decoded
			}
		}
	}
	c := build(ps, &fc, reg)
	if err := ps.err(); err != nil {
		return nil, err
	}
	c.File = file
	return c, nil
}

// Problem is one thing wrong with a routes file, at a line (0 when unknown).
type Problem = strictyaml.Problem

// problems collects the semantic problems of a decoded file at the lines of their keys.
// decoding holds what strictyaml reported: a value that could not be decoded (a list where a
// mapping belongs, a bad size) is not checked further, so it gets no second, misleading problem.
type problems struct {
	file     string
	data     []byte
	pos      strictyaml.Positions
	decoding []error
	list     []error
}

// at reports a problem at the line of path (or of its nearest ancestor written in the file).
func (ps *problems) at(path, format string, args ...any) {
	ps.atLine(path, ps.pos.Line(path), format, args...)
}

// atLine reports a problem about path at a given line.
func (ps *problems) atLine(path string, line int, format string, args ...any) {
	for _, e := range ps.decoding {
		var p *Problem
		if !errors.As(e, &p) {
			continue
		}
		bad := p.Path
		if p.UnknownKey != "" { // only that key is bad, not its mapping
			bad = strings.TrimPrefix(bad+"."+p.UnknownKey, ".")
		}
		if under(path, bad) {
			return
		}
	}
	ps.list = append(ps.list, &Problem{File: ps.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// under reports whether path is dir or lies under it.
func under(path, dir string) bool {
	return path == dir || dir == "" || strings.HasPrefix(path, dir+".") || strings.HasPrefix(path, dir+"[")
}

func (ps *problems) err() error { return strictyaml.Join(append(ps.decoding, ps.list...)) }

// build validates the decoded file and turns it into a Config, reporting into ps.
func build(ps *problems, fc *fileConfig, reg *transform.Registry) *Config {
	c := &Config{Ignore: DefaultIgnore, Datasets: map[string]Dataset{}}
	if fc.Ignore != nil {
		c.Ignore = *fc.Ignore
	}
	for i, g := range c.Ignore {
		if err := checkGlob(g); err != nil {
			ps.at(fmt.Sprintf("ignore[%d]", i), "%v", err)
		}
	}
	for name, d := range fc.Datasets {
		p := "datasets." + name
		if d == nil {
			d = &fileDataset{}
		}
		if d.Topic != "" && !(strings.HasPrefix(d.Topic, "arn:") && strings.Contains(d.Topic, ":sns:")) {
			ps.at(p+".topic", "topic %q is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)", d.Topic)
		}
		for k := range d.Attributes {
			if err := checkAttrName(k); err != nil {
				ps.at(p+".attributes."+k, "%v", err)
			}
		}
		ds := Dataset{Name: name, Topic: d.Topic, Attributes: d.Attributes}
		ds.Templates = buildTemplates(ps, p, d)
		if l := d.DownloadLinks; l != nil {
			if l.Expires < time.Second || l.Expires > MaxLinkExpiry {
				ps.at(p+".download_links.expires", "expires must be between 1s and %s (a pre-signed URL's limit)", MaxLinkExpiry)
			} else {
				ds.LinkExpiry = l.Expires
			}
		}
		c.Datasets[name] = ds
	}
	if len(fc.Routes) == 0 {
		ps.at("routes", "no routes")
	}
	names := map[string]int{}
	for i, fr := range fc.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if fr == nil {
			ps.at(p, "empty route")
			continue
		}
		if r := buildRoute(ps, p, fr, c.Datasets, reg); r != nil {
			if j, dup := names[r.Name]; dup && r.Name != "" {
				ps.at(p+".name", "route name %q is already used by routes[%d]", r.Name, j)
			}
			names[r.Name] = i
			c.Routes = append(c.Routes, r)
		}
	}
	// A route whose prefix lies under some route's output or quarantine would never match.
	for i, r := range c.Routes {
		for _, o := range c.Routes {
			for _, t := range []*template{o.out, o.quar} {
				if t != nil && strings.HasPrefix(r.Match.Prefix, t.prefix()) {
					ps.at(fmt.Sprintf("routes[%d].match.prefix", i), "prefix %q is under route %q's output or quarantine prefix %q, so nothing would ever match (outputs are never routed again)", r.Match.Prefix, o.Name, t.prefix())
				}
			}
		}
	}
	return c
}

func buildRoute(ps *problems, p string, fr *fileRoute, datasets map[string]Dataset, reg *transform.Registry) *Route {
	r := &Route{Name: fr.Name, Dataset: fr.Dataset, Output: fr.Output, Quarantine: fr.Quarantine}
	if strings.TrimSpace(fr.Name) == "" {
		ps.at(p+".name", "name is required")
	}
	m := fr.Match
	r.Match = Match{Prefix: m.Prefix, Glob: m.Glob, User: m.User}
	if strings.HasPrefix(m.Prefix, "/") || hasDotSegment(m.Prefix) {
		ps.at(p+".match.prefix", "prefix %q must be a key prefix: no leading /, no . or .. segments", m.Prefix)
	}
	if m.Glob != "" {
		if err := checkGlob(m.Glob); err != nil {
			ps.at(p+".match.glob", "%v", err)
		}
	}
	if strings.Contains(m.User, "/") {
		ps.at(p+".match.user", "user %q contains /", m.User)
	}
	if m.MinSize != nil {
		r.Match.MinSize = *m.MinSize
	}
	if m.MaxSize != nil {
		if *m.MaxSize <= 0 {
			ps.at(p+".match.max_size", "max_size must be above 0 (omit it for no upper bound)")
		}
		r.Match.MaxSize = *m.MaxSize
		if r.Match.MinSize > r.Match.MaxSize {
			ps.at(p+".match.min_size", "min_size %d is above max_size %d", r.Match.MinSize, r.Match.MaxSize)
		}
	}
	r.UserFromPrefix = m.Prefix
	if fr.UserFromPrefix != nil {
		r.UserFromPrefix = *fr.UserFromPrefix
		if strings.HasPrefix(r.UserFromPrefix, "/") {
			ps.at(p+".user_from_prefix", "%q starts with /", r.UserFromPrefix)
		}
	}
	if len(fr.Transforms) == 0 {
		ps.at(p+".transforms", "at least one transform is required (use copy to pass files through)")
	}
	for i, fs := range fr.Transforms {
		st := transform.Step{Name: fs.Name, Options: fs.Options}
		sp := fmt.Sprintf("%s.transforms[%d]", p, i)
		if fs.Name == "" {
			ps.at(sp, "transform name is required")
			continue
		}
		if _, err := reg.New(st); err != nil {
			where := sp + ".options" // the name is known: an option is wrong
			if !slices.Contains(reg.Names(), fs.Name) {
				where = sp + ".name"
			}
			ps.at(where, "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
		} else if a := transform.SidecarAlgorithm(st); a != "" {
			if r.Sidecar != "" && r.Sidecar != a {
				ps.at(sp, "a route reads one sidecar: this step wants a %s one, an earlier step a %s one", a, r.Sidecar)
			}
			r.Sidecar = a
		}
		r.Steps = append(r.Steps, st)
	}
	if fr.Output == "" {
		ps.at(p+".output", "output key template is required")
	} else if t, err := parseTemplate(fr.Output); err != nil {
		ps.at(p+".output", "%v", err)
	} else if !t.uses("name") && !t.uses("stem") && !strings.HasSuffix(fr.Output, "/") {
		ps.at(p+".output", "output %q must contain {name} or {stem} (or end with /) so each file gets its own key", fr.Output)
	} else {
		r.out = t
	}
	if fr.Quarantine == "" {
		ps.at(p+".quarantine", "quarantine prefix or template is required (where files that fail validation go)")
	} else if t, err := parseTemplate(fr.Quarantine); err != nil {
		ps.at(p+".quarantine", "%v", err)
	} else if !t.uses("name") && !t.uses("stem") && !strings.HasSuffix(fr.Quarantine, "/") {
		ps.at(p+".quarantine", "quarantine %q must contain {name} or {stem} (or end with /, then the name is appended)", fr.Quarantine)
	} else {
		r.quar = t
	}
	if fr.Dataset == "" {
		ps.at(p+".dataset", "dataset is required (who is told)")
	} else if d, ok := datasets[fr.Dataset]; !ok {
		ps.at(p+".dataset", "dataset %q is not defined under datasets", fr.Dataset)
	} else {
		r.Topic, r.Attributes = d.Topic, d.Attributes
	}
	if fr.CompleteOn != nil {
		r.CompleteOn = &CompleteOn{Marker: fr.CompleteOn.Marker}
		if fr.CompleteOn.Marker == "" {
			ps.at(p+".complete_on", "complete_on needs a marker glob, e.g. marker: \"*.done\"")
		} else if err := checkGlob(fr.CompleteOn.Marker); err != nil {
			ps.at(p+".complete_on.marker", "%v", err)
		}
	}
	r.needsUser = r.Match.User != "" || (r.out != nil && r.out.uses("user")) || (r.quar != nil && r.quar.uses("user"))
	return r
}

// buildTemplates compiles a dataset's notice templates, reporting each problem at its line in
// the file: the line of the template's key, plus the template's own line when the text is a
// block scalar (body: |) starting on the next line.
func buildTemplates(ps *problems, p string, d *fileDataset) *notify.Templates {
	lang := d.Language
	if lang == "" {
		lang = notify.DefaultLanguage
	}
	if !slices.Contains(notify.Languages, lang) {
		ps.at(p+".language", "language %q has no built-in templates (have %s)", lang, strings.Join(notify.Languages, ", "))
		return notify.MustBuiltin(notify.DefaultLanguage)
	}
	overrides := map[string]string{}
	paths := map[string]string{}
	if t := d.Templates; t != nil {
		for kind, ft := range map[string]*fileTemplate{notify.KindProcessed: t.Processed, notify.KindRejected: t.Rejected, notify.KindBatch: t.Batch} {
			if ft == nil {
				continue
			}
			for part, text := range map[string]string{notify.PartSubject: ft.Subject, notify.PartBody: ft.Body, notify.PartSMS: ft.SMS} {
				if strings.TrimSpace(text) != "" {
					overrides[kind+"."+part] = text
					paths[kind+"."+part] = p + ".templates." + kind + "." + part
				}
			}
		}
	}
	t, err := notify.Compile(lang, overrides)
	if err == nil {
		return t
	}
	var u interface{ Unwrap() []error }
	errs := []error{err}
	if errors.As(err, &u) {
		errs = u.Unwrap()
	}
	for _, e := range errs {
		var te *notify.TemplateError
		if !errors.As(e, &te) {
			ps.at(p+".templates", "%v", e)
			continue
		}
		path := paths[te.Name]
		ps.atLine(path, ps.templateLine(path, te.Line), "template %s: %s", te.Name, te.Msg)
	}
	return notify.MustBuiltin(lang)
}

// templateLine is the file line of line n (1-based, 0 = unknown) of the template text written
// at path.
func (ps *problems) templateLine(path string, n int) int {
	key := ps.pos.Line(path)
	if key == 0 || n == 0 {
		return key
	}
	lines := strings.Split(string(ps.data), "\n")
	if key > len(lines) {
		return key
	}
	switch m := blockScalar.FindStringSubmatch(lines[key-1]); {
	case m == nil:
		return key
	case m[1] == "|":
		return key + n // a literal block keeps its lines; the first follows the key
	default:
		return key + 1 // a folded block joins its lines: its first line is as near as it gets
	}
}

// blockScalar matches a key line whose value is a YAML block scalar: literal ("body: |") or
// folded ("body: >-").
var blockScalar = regexp.MustCompile(`:\s*([|>])[-+0-9]*\s*(#.*)?$`)

// checkGlob accepts a path.Match pattern on a base name.
func checkGlob(g string) error {
	if g == "" {
		return fmt.Errorf("empty glob")
	}
	if strings.Contains(g, "/") {
		return fmt.Errorf("glob %q matches a file name and cannot contain /", g)
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("glob %q: %w", g, err)
	}
	return nil
}

func hasDotSegment(p string) bool {
	for s := range strings.SplitSeq(p, "/") {
		if s == "." || s == ".." {
			return true
		}
	}
	return false
}

// checkAttrName applies SNS's rules for message attribute names and keeps the ones the notify
// handler sets for itself.
func checkAttrName(k string) error {
	switch {
	case k == "" || len(k) > 256:
		return fmt.Errorf("attribute name must be 1 to 256 characters")
	case k == "dataset" || k == "user" || k == "status" || k == "route" || k == "kind":
		return fmt.Errorf("attribute %q is set by the notify handler itself", k)
	case strings.HasPrefix(strings.ToLower(k), "aws.") || strings.HasPrefix(strings.ToLower(k), "amazon."):
		return fmt.Errorf("attribute %q: names starting with AWS. or Amazon. are reserved", k)
	case strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, ".."):
		return fmt.Errorf("attribute %q: no leading, trailing or doubled dots", k)
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.", r)) {
			return fmt.Errorf("attribute %q: only letters, digits, -, _ and . are allowed", k)
		}
	}
	return nil
}
