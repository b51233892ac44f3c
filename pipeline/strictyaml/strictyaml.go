// Package strictyaml decodes an admin-written YAML file into a Go struct strictly and reports
// every problem at once as "file:line: path: reason".
//
// goccy/go-yaml parses (it keeps line numbers on every token); this package walks the AST itself
// because goccy's decoder stops at the first error of a struct, and an admin fixing a file wants
// the whole list. It also records the line of every value it decoded, so that a later semantic
// check (Validate) can point at the right line too.
//
// Supported targets: structs (fields by `yaml:"name"` tag, unknown keys are errors), maps with
// string keys (any key accepted), pointers, slices, string, bool, integers, floats,
// time.Duration ("15m"), encoding.TextUnmarshaler, and `any` (free-form values: map[string]any,
// []any, string, int64, float64, bool or nil, as written).
// A null value ("key:" with nothing after it) keeps the value already in the target, so defaults
// set before decoding survive a key whose children were all commented out.
package strictyaml

import (
	"encoding"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Problem is one thing wrong with a file, at a line (0 when unknown).
type Problem struct {
	File string
	Line int
	Path string // e.g. "storage.s3.part_size" or "users[2].home"; may be empty
	Msg  string
	// UnknownKey is set for an unknown key: the key, written in the mapping at Path.
	UnknownKey string
}

func (p *Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Positions maps the path of every decoded value to the line it was written on.
type Positions map[string]int

// Line returns the line of path, or of its nearest written ancestor, or 0.
func (p Positions) Line(path string) int {
	for path != "" {
		if l, ok := p[path]; ok {
			return l
		}
		path = parent(path)
	}
	return 0
}

func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// Options adjust decoding.
type Options struct {
	// Lookup, when set, expands ${NAME} references in string values (as os.LookupEnv does);
	// "$${" stands for a literal "${". A reference Lookup reports unset is a problem.
	Lookup func(name string) (string, bool)
}

// Decode parses data (named file in messages) and decodes it into v, a pointer to a struct.
// The error, if any, joins every *Problem found, ordered by line.
func Decode(file string, data []byte, v any, opts Options) (Positions, error) {
	d := &decoder{file: file, opts: opts, pos: Positions{}, anchors: map[string]ast.Node{}}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, fmt.Errorf("strictyaml: decode into non-pointer %T", v)
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, d.syntaxProblem(err)
	}
	var body ast.Node
	for i, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil {
			d.problem(lineOf(doc.Body), "", "only one YAML document is allowed (found another after ---, document %d)", i+1)
			break
		}
		body = doc.Body
	}
	if body != nil {
		d.decode(body, rv.Elem(), "")
	}
	return d.pos, d.err()
}

// Join orders problems by line and joins them; nil when there are none.
func Join(problems []error) error {
	sort.SliceStable(problems, func(i, j int) bool { return lineOfErr(problems[i]) < lineOfErr(problems[j]) })
	return errors.Join(problems...)
}

func lineOfErr(err error) int {
	var p *Problem
	if errors.As(err, &p) {
		return p.Line
	}
	return 0
}

type decoder struct {
	file     string
	opts     Options
	pos      Positions
	anchors  map[string]ast.Node
	problems []error
	depth    int
}

func (d *decoder) problem(line int, path, format string, args ...any) {
	d.problems = append(d.problems, &Problem{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) err() error { return Join(d.problems) }

func (d *decoder) syntaxProblem(err error) error {
	var ye interface {
		GetToken() *token.Token
		GetMessage() string
	}
	if errors.As(err, &ye) {
		line := 0
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			line = tk.Position.Line
		}
		return &Problem{File: d.file, Line: line, Msg: "yaml: " + ye.GetMessage()}
	}
	return &Problem{File: d.file, Msg: "yaml: " + err.Error()}
}

func lineOf(n ast.Node) int {
	if n == nil {
		return 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	unmarshalType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

const maxDepth = 64

// decode stores node into dst (settable), recording problems under path.
func (d *decoder) decode(node ast.Node, dst reflect.Value, path string) {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		d.problem(lineOf(node), path, "nested too deeply")
		return
	}
	node = d.resolve(node, path)
	if node == nil {
		return
	}
	if _, ok := node.(*ast.NullNode); ok {
		return // keep the default
	}
	if dst.Kind() == reflect.Pointer {
		if dst.IsNil() {
			dst.Set(reflect.New(dst.Type().Elem()))
		}
		d.decode(node, dst.Elem(), path)
		return
	}
	if dst.Type() == durationType || reflect.PointerTo(dst.Type()).Implements(unmarshalType) {
		d.decodeScalar(node, dst, path)
		return
	}
	switch dst.Kind() {
	case reflect.Struct:
		d.decodeStruct(node, dst, path)
	case reflect.Map:
		d.decodeMap(node, dst, path)
	case reflect.Interface:
		if dst.NumMethod() != 0 {
			d.problem(lineOf(node), path, "strictyaml: cannot decode into %s", dst.Type())
			return
		}
		if v := d.generic(node, path); v != nil {
			dst.Set(reflect.ValueOf(v))
		}
	case reflect.Slice:
		d.decodeSlice(node, dst, path)
	default:
		d.decodeScalar(node, dst, path)
	}
}

// resolve follows anchors, aliases and tags to the node holding the value.
func (d *decoder) resolve(node ast.Node, path string) ast.Node {
	for range maxDepth {
		switch n := node.(type) {
		case *ast.AnchorNode:
			if n.Name != nil {
				d.anchors[n.Name.String()] = n.Value
			}
			node = n.Value
		case *ast.AliasNode:
			name := ""
			if n.Value != nil {
				name = n.Value.String()
			}
			target, ok := d.anchors[name]
			if !ok {
				d.problem(lineOf(n), path, "unknown alias *%s", name)
				return nil
			}
			node = target
		case *ast.TagNode:
			node = n.Value
		default:
			return node
		}
	}
	d.problem(lineOf(node), path, "aliases nested too deeply")
	return nil
}

func kindName(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}

func (d *decoder) decodeStruct(node ast.Node, dst reflect.Value, path string) {
	pairs, ok := mappingPairs(node)
	if !ok {
		d.problem(lineOf(node), path, "expected a mapping (key: value lines), got %s", kindName(node))
		return
	}
	fields := fieldsOf(dst.Type())
	for _, kv := range pairs {
		key, line, ok := d.key(kv, path)
		if !ok {
			continue
		}
		sub := join(path, key)
		idx, ok := fields[key]
		if !ok {
			msg := fmt.Sprintf("unknown key %q", key)
			if s := suggest(key, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (known: " + strings.Join(slices.Sorted(maps.Keys(fields)), ", ") + ")"
			}
			d.problems = append(d.problems, &Problem{File: d.file, Line: line, Path: path, Msg: msg, UnknownKey: key})
			continue
		}
		d.pos[sub] = line
		d.decode(kv.Value, dst.Field(idx), sub)
	}
}

// decodeMap decodes a mapping into a map with string keys; every key is accepted. A key with
// no value is present with the element's zero value.
func (d *decoder) decodeMap(node ast.Node, dst reflect.Value, path string) {
	pairs, ok := mappingPairs(node)
	if !ok {
		d.problem(lineOf(node), path, "expected a mapping (key: value lines), got %s", kindName(node))
		return
	}
	if dst.Type().Key().Kind() != reflect.String {
		d.problem(lineOf(node), path, "strictyaml: cannot decode into %s", dst.Type())
		return
	}
	if dst.IsNil() {
		dst.Set(reflect.MakeMapWithSize(dst.Type(), len(pairs)))
	}
	for _, kv := range pairs {
		key, line, ok := d.key(kv, path)
		if !ok {
			continue
		}
		sub := join(path, key)
		d.pos[sub] = line
		elem := reflect.New(dst.Type().Elem()).Elem()
		d.decode(kv.Value, elem, sub)
		dst.SetMapIndex(reflect.ValueOf(key).Convert(dst.Type().Key()), elem)
	}
}

// key returns a pair's key and line, or reports why it is not a usable key.
func (d *decoder) key(kv *ast.MappingValueNode, path string) (string, int, bool) {
	keyNode := d.resolve(kv.Key, path)
	line := lineOf(kv.Key)
	if _, merge := keyNode.(*ast.MergeKeyNode); merge {
		d.problem(line, path, "merge keys (<<) are not supported")
		return "", line, false
	}
	key, ok := scalarText(keyNode)
	if !ok {
		d.problem(line, path, "a key must be a plain name")
	}
	return key, line, ok
}

func mappingPairs(node ast.Node) ([]*ast.MappingValueNode, bool) {
	switch n := node.(type) {
	case *ast.MappingNode:
		return n.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{n}, true
	}
	return nil, false
}

// generic decodes a free-form value (an `any` target), node already resolved and not null.
func (d *decoder) generic(node ast.Node, path string) any {
	switch n := node.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		m := map[string]any{}
		d.decodeMap(node, reflect.ValueOf(&m).Elem(), path)
		return m
	case *ast.SequenceNode:
		var s []any
		d.decodeSlice(node, reflect.ValueOf(&s).Elem(), path)
		return s
	case *ast.IntegerNode:
		switch v := n.Value.(type) {
		case int64:
			return v
		case uint64:
			if v <= math.MaxInt64 {
				return int64(v)
			}
			return float64(v)
		}
	case *ast.FloatNode:
		return n.Value
	case *ast.InfinityNode:
		return n.Value
	case *ast.NanNode:
		return math.NaN()
	case *ast.BoolNode:
		return n.Value
	case *ast.StringNode, *ast.LiteralNode:
		var s string
		d.decodeScalar(node, reflect.ValueOf(&s).Elem(), path)
		return s
	}
	d.problem(lineOf(node), path, "unsupported value %s", kindName(node))
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldsOf maps YAML names to field indexes. Fields need a yaml tag to be decodable.
func fieldsOf(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = i
	}
	return m
}

func (d *decoder) decodeSlice(node ast.Node, dst reflect.Value, path string) {
	seq, ok := node.(*ast.SequenceNode)
	if !ok {
		d.problem(lineOf(node), path, "expected a list, got %s", kindName(node))
		return
	}
	out := reflect.MakeSlice(dst.Type(), len(seq.Values), len(seq.Values))
	for i, item := range seq.Values {
		sub := fmt.Sprintf("%s[%d]", path, i)
		d.pos[sub] = lineOf(item)
		d.decode(item, out.Index(i), sub)
	}
	dst.Set(out)
}

// scalarText returns the text of a scalar node as written (unquoted).
func scalarText(n ast.Node) (string, bool) {
	switch n := n.(type) {
	case *ast.StringNode:
		return n.Value, true
	case *ast.LiteralNode:
		if n.Value == nil {
			return "", true
		}
		return n.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.GetToken().Value, true
	}
	return "", false
}

func (d *decoder) decodeScalar(node ast.Node, dst reflect.Value, path string) {
	line := lineOf(node)
	text, ok := scalarText(node)
	if !ok {
		d.problem(line, path, "expected a single value, got %s", kindName(node))
		return
	}
	switch node.(type) {
	case *ast.StringNode, *ast.LiteralNode:
		if d.opts.Lookup != nil {
			expanded, missing, err := expand(text, d.opts.Lookup)
			for _, name := range missing {
				d.problem(line, path, "environment variable %s is not set", name)
			}
			if err != nil {
				d.problem(line, path, "%v", err)
			}
			if err != nil || len(missing) > 0 {
				return
			}
			text = expanded
		}
	}
	if err := setScalar(node, text, dst); err != nil {
		d.problem(line, path, "%v", err)
	}
}

func setScalar(node ast.Node, text string, dst reflect.Value) error {
	if dst.Type() == durationType {
		v, err := time.ParseDuration(strings.TrimSpace(text))
		if err != nil {
			return fmt.Errorf("invalid duration %q (write e.g. 30s, 15m, 1h30m)", text)
		}
		dst.SetInt(int64(v))
		return nil
	}
	if u, ok := dst.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(text))
	}
	switch dst.Kind() {
	case reflect.String:
		dst.SetString(text)
	case reflect.Bool:
		switch text {
		case "true", "True", "TRUE":
			dst.SetBool(true)
		case "false", "False", "FALSE":
			dst.SetBool(false)
		default:
			return fmt.Errorf("expected true or false, got %q", text)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var v int64
		var err error
		if in, ok := node.(*ast.IntegerNode); ok {
			switch n := in.Value.(type) {
			case int64:
				v = n
			case uint64:
				if n > math.MaxInt64 {
					err = strconv.ErrRange
				}
				v = int64(n)
			}
		} else {
			v, err = strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		}
		if err != nil || dst.OverflowInt(v) {
			return fmt.Errorf("expected a whole number, got %q", text)
		}
		dst.SetInt(v)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v, err := strconv.ParseUint(strings.TrimSpace(text), 0, 64)
		if err != nil || dst.OverflowUint(v) {
			return fmt.Errorf("expected a non-negative whole number, got %q", text)
		}
		dst.SetUint(v)
	case reflect.Float32, reflect.Float64:
		v, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
		if err != nil {
			return fmt.Errorf("expected a number, got %q", text)
		}
		dst.SetFloat(v)
	default:
		return fmt.Errorf("strictyaml: cannot decode into %s", dst.Type())
	}
	return nil
}

// suggest returns the known key closest to key when it is a likely typo.
func suggest(key string, fields map[string]int) string {
	best, bestDist := "", 3
	for name := range fields {
		if dist := editDistance(key, name); dist < bestDist || dist == bestDist && name < best {
			best, bestDist = name, dist
		}
	}
	if bestDist > 2 || bestDist >= len(key) {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
