package transform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// csvToJSONL writes one JSON object per CSV record, keyed by the header row (or by the names
// given in the header option, in which case the first row is data). Every value is a JSON
// string. It counts records into the chain's Counter.
//
// Options: delimiter (default ","), quote (default `"`, "" for none), header (true, the
// default, or a list of names).
type csvToJSONL struct {
	d     csvDialect
	names []string // from the header option; nil: the first row is the header
}

func newCSVToJSONL(o *Options) (Transform, error) {
	t := &csvToJSONL{d: parseDialect(o)}
	if v, ok := o.Raw("header"); ok {
		switch h := v.(type) {
		case bool:
			if !h {
				return nil, errors.New("option header: false needs the column names instead, as a list")
			}
		default:
			t.names = o.toStrings("header", v)
			if t.names != nil {
				if len(t.names) == 0 {
					return nil, errors.New("option header: empty list of names")
				}
				if err := checkHeader(t.names); err != nil {
					return nil, fmt.Errorf("option header: %w", err)
				}
			}
		}
	}
	return t, nil
}

func checkHeader(names []string) error {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			return fmt.Errorf("duplicate column name %q", n)
		}
		seen[n] = true
	}
	return nil
}

func (t *csvToJSONL) Apply(ctx context.Context, in File, emit func(File) error) error {
	r := &jsonlReader{p: newCSVParser(in.Body, t.d, true), counter: CounterFrom(ctx)}
	if t.names != nil {
		r.setKeys(t.names)
	}
	return emitOne(ctx, replaceExt(in.Name, ".jsonl"), r, emit)
}

// replaceExt swaps name's extension for ext ("a.csv" -> "a.jsonl").
func replaceExt(name, ext string) string {
	return strings.TrimSuffix(name, path.Ext(name)) + ext
}

type jsonlReader struct {
	p       *csvParser
	counter *Counter
	keys    [][]byte // `"name":` pre-encoded, with a leading ',' from the second on
	out     []byte
	off     int
	err     error
}

func (r *jsonlReader) setKeys(names []string) {
	r.keys = make([][]byte, len(names))
	for i, n := range names {
		var k []byte
		if i > 0 {
			k = append(k, ',')
		}
		k = appendJSONString(k, []byte(n))
		r.keys[i] = append(k, ':')
	}
}

func (r *jsonlReader) Read(p []byte) (int, error) {
	for r.off == len(r.out) {
		if r.err != nil {
			return 0, r.err
		}
		r.out, r.off = r.out[:0], 0
		r.fill()
	}
	n := copy(p, r.out[r.off:])
	r.off += n
	return n, nil
}

// fill converts records until about 32 KiB of output is buffered or the input ends.
func (r *jsonlReader) fill() {
	var n int64
	defer func() { r.counter.Add(n) }()
	for len(r.out) < 32<<10 {
		if err := r.p.next(); err != nil {
			r.err = err
			return
		}
		if r.keys == nil {
			names := make([]string, r.p.fields())
			for i := range names {
				names[i] = string(r.p.field(i))
			}
			if err := checkHeader(names); err != nil {
				r.err = &Rejection{Line: r.p.recLine, Reason: "header: " + err.Error()}
				return
			}
			r.setKeys(names)
			continue
		}
		if r.p.fields() != len(r.keys) {
			r.err = reject(r.p.recLine, "%d fields, the header has %d", r.p.fields(), len(r.keys))
			return
		}
		r.out = append(r.out, '{')
		for i, k := range r.keys {
			r.out = append(r.out, k...)
			r.out = appendJSONString(r.out, r.p.field(i))
		}
		r.out = append(r.out, '}', '\n')
		n++
	}
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s (valid UTF-8) as a JSON string. Only '"', '\\' and control
// characters need escaping; this is the hot loop of csv-to-jsonl, hence no encoding/json.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// validateCSV passes its input through unchanged while checking it: every record parses, the
// header holds required_columns, and every row has columns fields (or, without that option,
// as many as the first row). A failure is a Rejection naming the line, returned from the
// output's Read at the point it is found (bytes before it may already have been read: the
// consumer must not commit an output whose Read failed).
//
// Options: delimiter, quote (as csv-to-jsonl), header (default true), required_columns (list,
// needs header), columns (exact field count).
type validateCSV struct {
	d        csvDialect
	header   bool
	required []string
	columns  int
}

func newValidateCSV(o *Options) (Transform, error) {
	t := &validateCSV{
		d:        parseDialect(o),
		header:   o.Bool("header", true),
		required: o.Strings("required_columns"),
		columns:  int(o.Int("columns", 0)),
	}
	if t.columns < 0 {
		return nil, fmt.Errorf("option columns: must be positive, got %d", t.columns)
	}
	if len(t.required) > 0 && !t.header {
		return nil, errors.New("option required_columns: needs header: true")
	}
	return t, nil
}

func (t *validateCSV) Apply(ctx context.Context, in File, emit func(File) error) error {
	r := &validateReader{t: t, want: t.columns}
	r.p = newCSVParser(io.TeeReader(in.Body, &appender{buf: &r.out, limit: t.d.maxRecord + parserBuffer}), t.d, false)
	return emitOne(ctx, in.Name, r, emit)
}

// appender collects what the parser's bufio.Reader pulls from the input, to be passed on: at
// most one record and the parser's read-ahead, which limit is sized for.
type appender struct {
	buf   *[]byte
	limit int
}

func (a *appender) Write(p []byte) (int, error) {
	*a.buf = appendDoubling(*a.buf, p, a.limit)
	return len(p), nil
}

type validateReader struct {
	t       *validateCSV
	p       *csvParser
	want    int // fields per row; 0 until known
	records int64
	out     []byte
	off     int
	err     error
}

func (r *validateReader) Read(p []byte) (int, error) {
	for r.off == len(r.out) {
		if r.err != nil {
			return 0, r.err
		}
		r.out, r.off = r.out[:0], 0
		r.err = r.check()
		if r.err == io.EOF && r.records == 0 && len(r.t.required) > 0 {
			r.err = reject(0, "empty file: no header with the required columns %v", r.t.required)
		}
	}
	n := copy(p, r.out[r.off:])
	r.off += n
	return n, nil
}

// check validates one record.
func (r *validateReader) check() error {
	if err := r.p.next(); err != nil {
		return err
	}
	r.records++
	n := r.p.fields()
	if r.records == 1 && r.t.header {
		names := make([]string, n)
		for i := range names {
			names[i] = string(r.p.field(i))
		}
		for _, c := range r.t.required {
			if !slices.Contains(names, c) {
				return reject(r.p.recLine, "missing required column %q", c)
			}
		}
	}
	if r.want == 0 {
		r.want = n
	}
	if n != r.want {
		what := "the first row has"
		if r.t.columns > 0 {
			what = "want"
		}
		return reject(r.p.recLine, "%d fields, %s %d", n, what, r.want)
	}
	return nil
}
