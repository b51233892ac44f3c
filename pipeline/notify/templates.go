package notify

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"
)

// Parts of a notice each kind has a template for: the e-mail subject and body, the SMS line.
const (
	PartSubject = "subject"
	PartBody    = "body"
	PartSMS     = "sms"
)

// Parts lists the template parts.
var Parts = []string{PartSubject, PartBody, PartSMS}

// Languages are the built-in template languages.
var Languages = []string{"en", "es"}

// DefaultLanguage is a dataset's language when it names none.
const DefaultLanguage = "en"

//go:embed templates/*.tmpl
var builtinFS embed.FS

// Templates are a dataset's notice templates: for each kind (processed, rejected, batch) a
// subject, a body and an SMS line, from the built-ins of one language, any of them overridden.
// They are Go text/template texts over a Notice ("." is the notice).
type Templates struct {
	lang    string
	set     map[string]*template.Template // "processed.subject" ...
	builtin map[string]*template.Template // the language's own, the fallback at run time
}

// TemplateError is a template that does not parse or names what a notice does not have.
type TemplateError struct {
	Name string // kind.part, e.g. "rejected.body"
	Line int    // 1-based line in the template's text; 0 when unknown
	Msg  string
}

func (e *TemplateError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("template %s, line %d: %s", e.Name, e.Line, e.Msg)
	}
	return fmt.Sprintf("template %s: %s", e.Name, e.Msg)
}

// Compile returns lang's built-in templates with overrides ("rejected.body" -> text) in their
// place. Every template is checked now: its syntax, and every field it names in every branch
// against Notice, so a typo fails `ferry check` instead of a notice in production. The error
// joins a *TemplateError per problem.
func Compile(lang string, overrides map[string]string) (*Templates, error) {
	if lang == "" {
		lang = DefaultLanguage
	}
	if !slices.Contains(Languages, lang) {
		return nil, fmt.Errorf("language %q has no built-in templates (have %s)", lang, strings.Join(Languages, ", "))
	}
	base, err := builtin(lang)
	if err != nil {
		return nil, err
	}
	t := &Templates{lang: lang, set: map[string]*template.Template{}, builtin: base}
	for name, tpl := range base {
		t.set[name] = tpl
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(overrides)) {
		if _, ok := base[name]; !ok {
			errs = append(errs, &TemplateError{Name: name, Msg: "no such template (kinds: processed, rejected, batch; parts: subject, body, sms)"})
			continue
		}
		tpl, perrs := parseChecked(name, overrides[name], lang)
		if len(perrs) > 0 {
			errs = append(errs, perrs...)
			continue
		}
		t.set[name] = tpl
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// MustBuiltin returns lang's built-in templates; it panics for a language not in Languages.
func MustBuiltin(lang string) *Templates {
	t, err := Compile(lang, nil)
	if err != nil {
		panic(err)
	}
	return t
}

// Language is the language of the templates.
func (t *Templates) Language() string { return t.lang }

// builtin parses lang's file of templates ({{define "processed.subject"}} ...) and checks each
// like an override: a broken built-in fails every test that loads one.
func builtin(lang string) (map[string]*template.Template, error) {
	src, err := builtinFS.ReadFile("templates/" + lang + ".tmpl")
	if err != nil {
		return nil, fmt.Errorf("notify: built-in templates %s: %w", lang, err)
	}
	defs := defineRe.FindAllSubmatchIndex(src, -1)
	out := map[string]*template.Template{}
	for i, m := range defs {
		name := string(src[m[2]:m[3]])
		end := len(src)
		if i+1 < len(defs) {
			end = defs[i+1][0]
		}
		body := strings.TrimSuffix(strings.TrimRight(string(src[m[1]:end]), " \t\n"), "{{end}}")
		tpl, errs := parseChecked(name, body, lang)
		if len(errs) > 0 {
			return nil, fmt.Errorf("notify: built-in templates %s: %w", lang, errors.Join(errs...))
		}
		out[name] = tpl
	}
	for _, k := range Kinds {
		for _, p := range Parts {
			if out[k+"."+p] == nil {
				return nil, fmt.Errorf("notify: built-in templates %s lack %s.%s", lang, k, p)
			}
		}
	}
	return out, nil
}

// defineRe finds the "{{define "kind.part"}}" headers of a built-in file; each body runs to its
// closing {{end}}, the last thing before the next header.
var defineRe = regexp.MustCompile(`(?m)^\{\{define "([a-z]+\.[a-z]+)"\}\}\n?`)

// parseChecked parses one template, checks its fields statically and runs it on sample notices
// of each kind (function arguments of the wrong type show only at run time).
func parseChecked(name, text, lang string) (*template.Template, []error) {
	fm := funcs(lang)
	tpl, err := template.New(name).Option("missingkey=error").Funcs(fm).Parse(text)
	if err != nil {
		return nil, []error{parseError(name, err)}
	}
	var errs []error
	for _, fe := range checkFields(tpl, reflect.TypeFor[Notice](), fm) {
		var f *FieldError
		errors.As(fe, &f)
		errs = append(errs, &TemplateError{Name: name, Line: f.Line, Msg: f.Msg})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	for _, n := range sampleNotices() {
		if err := tpl.Execute(discard{}, n); err != nil {
			return nil, []error{parseError(name, err)}
		}
	}
	return tpl, nil
}

// lineRe finds "name:LINE:" in text/template's messages.
var lineRe = regexp.MustCompile(`:(\d+):`)

func parseError(name string, err error) *TemplateError {
	msg := err.Error()
	te := &TemplateError{Name: name, Msg: msg}
	if m := lineRe.FindStringSubmatchIndex(msg); m != nil {
		fmt.Sscan(msg[m[2]:m[3]], &te.Line)
		te.Msg = strings.TrimSpace(strings.TrimLeft(msg[m[1]:], "0123456789:"))
	}
	return te
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Render writes n in its kind's templates: subject, body, SMS line, and the JSON of n for
// machine subscribers. A template that fails at run time (it passed the checks, so only on data
// nobody foresaw) falls back to the built-in text of the language, and the error is returned
// beside the notification so the caller can log it. When the message would exceed SNS's limit,
// the file lists are shortened (n.Omitted says by how many) until it fits.
func (t *Templates) Render(n Notice) (Notification, error) {
	all := n.Files
	for keep := len(all); ; keep /= 2 {
		n.Files, n.Omitted = all[:keep], len(all)-keep
		out, err := t.render(n)
		if _, werr := out.Wire(); !errors.Is(werr, ErrTooLarge) || keep <= 1 {
			return out, err
		}
	}
}

func (t *Templates) render(n Notice) (Notification, error) {
	var errs []error
	text := func(part string) string {
		name := n.Kind + "." + part
		var b strings.Builder
		if err := t.set[name].Execute(&b, n); err != nil {
			errs = append(errs, fmt.Errorf("template %s: %w", name, err))
			b.Reset()
			if err := t.builtin[name].Execute(&b, n); err != nil {
				errs = append(errs, fmt.Errorf("built-in template %s: %w", name, err))
			}
		}
		return b.String()
	}
	subject := TruncateSubject(oneLine(text(PartSubject)))
	body := tidy(text(PartBody))
	sms := cutRunes(oneLine(text(PartSMS)), MaxSMS)
	js, err := json.Marshal(n)
	if err != nil {
		errs = append(errs, fmt.Errorf("notice json: %w", err))
	}
	if subject == "" {
		subject = n.Dataset + ": " + n.Status
	}
	if body == "" {
		body = subject + "\n"
	}
	var tids []string
	for _, f := range n.Files {
		if f.TransferID != "" {
			tids = append(tids, f.TransferID)
		}
	}
	return Notification{
		ID: n.ID, Time: n.Time, Dataset: n.Dataset, Subject: subject, Message: body, SMS: sms,
		JSON: js, Attributes: n.Attributes, TransferIDs: tids,
	}, errors.Join(errs...)
}

// oneLine joins s's words with single spaces: a subject or SMS template may span lines.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// tidy trims every line's trailing blanks, keeps at most one empty line in a row and ends the
// text with one newline, so templates can be laid out for reading.
func tidy(s string) string {
	lines := strings.Split(s, "\n")
	var out []string
	blank := true // drops leading empty lines
	for _, l := range lines {
		l = strings.TrimRight(l, " \t\r")
		if l == "" {
			if blank {
				continue
			}
			blank = true
		} else {
			blank = false
		}
		out = append(out, l)
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "\n") + "\n"
}

func cutRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// sampleNotices are notices of every kind with every field set, to run templates on at load.
func sampleNotices() []Notice {
	at := time.Date(2026, 12, 5, 9, 30, 0, 0, time.UTC)
	ok := File{Key: "incoming/ana/ventas.csv", Name: "ventas.csv", URL: "s3://b/incoming/ana/ventas.csv", Size: 2048,
		SHA256: strings.Repeat("ab", 32), User: "ana", Protocol: "sftp", TransferID: "t-1", Received: at, Status: KindProcessed,
		Records: 12, Outputs: []Output{{Key: "processed/ana/ventas.jsonl", Name: "ventas.jsonl", URL: "s3://b/processed/ana/ventas.jsonl",
			Size: 4096, Link: "https://example.invalid/x", LinkExpires: at.Add(24 * time.Hour)}}}
	bad := File{Key: "incoming/ana/malo.csv", Name: "malo.csv", URL: "s3://b/incoming/ana/malo.csv", Size: 10, User: "ana",
		Received: at, Status: KindRejected, Reason: "2 fields, the header has 3", Line: 7,
		Quarantine: "quarantine/ana/malo.csv", QuarantineURL: "s3://b/quarantine/ana/malo.csv"}
	base := Notice{Version: 1, ID: "x", Dataset: "demo", Route: "r", User: "ana", Bucket: "b", Time: at,
		LinkExpiry: 24 * time.Hour, Attributes: map[string]string{"dataset": "demo"}}
	p, r, b := base, base, base
	p.Kind, p.Status, p.File, p.Files, p.Total, p.Processed = KindProcessed, KindProcessed, ok, []File{ok}, 1, 1
	r.Kind, r.Status, r.File, r.Files, r.Total, r.Rejected = KindRejected, KindRejected, bad, []File{bad}, 1, 1
	b.Kind, b.Status, b.File, b.Files, b.Total, b.Processed, b.Rejected, b.Omitted = KindBatch, KindRejected, ok, []File{ok, bad}, 3, 2, 1, 1
	b.Marker, b.MarkerURL = "incoming/ana/lote.done", "s3://b/incoming/ana/lote.done"
	return []Notice{p, r, b}
}
