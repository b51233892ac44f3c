package route

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Problem is one thing wrong with a routes file, at a line (0 when unknown).
type Problem struct {
	File string
	Line int
	Path string // e.g. "routes[1].match.glob"; may be empty
	Msg  string
}

func (p *Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// problems collects Problems and the line of every key seen in the file.
type problems struct {
	file  string
	lines map[string]int
	list  []error
	// shape is set when a value has the wrong shape (a list where a mapping belongs...): goccy's
	// decoder must not see such a file (it can panic on some), while unknown keys alone still let
	// it decode the rest, so later checks report their problems too.
	shape bool
}

func (ps *problems) add(line int, path, format string, args ...any) {
	ps.list = append(ps.list, &Problem{File: ps.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// at reports a problem at the line of path (or of its nearest ancestor written in the file).
func (ps *problems) at(path, format string, args ...any) {
	ps.add(ps.line(path), path, format, args...)
}

func (ps *problems) line(path string) int {
	for path != "" {
		if l, ok := ps.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// err joins the problems ordered by line; nil when there are none.
func (ps *problems) err() error {
	sort.SliceStable(ps.list, func(i, j int) bool { return lineOf(ps.list[i]) < lineOf(ps.list[j]) })
	return errors.Join(ps.list...)
}

func lineOf(err error) int {
	var p *Problem
	if errors.As(err, &p) {
		return p.Line
	}
	return 0
}

// check parses data and walks it against the shape of t (the raw file struct), reporting every
// unknown or duplicate key and every mapping/sequence in the wrong place at once; goccy's
// strict decoder stops at the first. It records the line of every key for later checks.
// It returns false when the file could not be parsed at all.
func (ps *problems) check(data []byte, t reflect.Type) bool {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		ps.list = append(ps.list, ps.yamlProblem(err))
		return false
	}
	var seen bool
	for i, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if seen {
			ps.add(nodeLine(doc.Body), "", "only one YAML document is allowed (found document %d)", i+1)
			return false
		}
		seen = true
		ps.walk(doc.Body, t, "", 0)
	}
	return true
}

// yamlProblem turns one of goccy's errors (syntax or decoding) into a Problem with its line.
func (ps *problems) yamlProblem(err error) error {
	var ye interface {
		GetToken() *token.Token
		GetMessage() string
	}
	if errors.As(err, &ye) {
		line := 0
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			line = tk.Position.Line
		}
		return &Problem{File: ps.file, Line: line, Msg: ye.GetMessage()}
	}
	return &Problem{File: ps.file, Msg: err.Error()}
}

func nodeLine(n ast.Node) int {
	if n == nil {
		return 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

func (ps *problems) walk(n ast.Node, t reflect.Type, path string, depth int) {
	if depth > 32 {
		ps.shape = true
		ps.add(nodeLine(n), path, "nested too deeply")
		return
	}
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
			continue
		case *ast.TagNode:
			n = v.Value
			continue
		case *ast.AliasNode:
			return // the anchored value was checked where it was written
		}
		break
	}
	if n == nil {
		return
	}
	if _, ok := n.(*ast.NullNode); ok {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		ps.checkText(n, t, path)
		return
	}
	switch t.Kind() {
	case reflect.Interface:
		return // options: any value
	case reflect.Struct, reflect.Map:
		values, ok := mappingValues(n)
		if !ok {
			ps.shape = true
			ps.add(nodeLine(n), path, "expected a mapping (key: value), got %s", n.Type())
			return
		}
		fields := map[string]reflect.Type{}
		if t.Kind() == reflect.Struct {
			for i := range t.NumField() {
				f := t.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if name != "" && name != "-" {
					fields[name] = f.Type
				}
			}
		}
		for _, mv := range values {
			key := keyString(mv.Key)
			kpath := key
			if path != "" {
				kpath = path + "." + key
			}
			line := nodeLine(mv.Key) // duplicate keys are refused by goccy's parser
			ps.lines[kpath] = line
			if t.Kind() == reflect.Map {
				ps.walk(mv.Value, t.Elem(), kpath, depth+1)
				continue
			}
			ft, ok := fields[key]
			if !ok {
				ps.add(line, kpath, "unknown key %q (known: %s)", key, strings.Join(sortedKeys(fields), ", "))
				continue
			}
			ps.walk(mv.Value, ft, kpath, depth+1)
		}
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			ps.shape = true
			ps.add(nodeLine(n), path, "expected a list, got %s", n.Type())
			return
		}
		for i, item := range seq.Values {
			ipath := path + "[" + strconv.Itoa(i) + "]"
			ps.lines[ipath] = nodeLine(item)
			ps.walk(item, t.Elem(), ipath, depth+1)
		}
	default:
		switch n.(type) {
		case *ast.MappingNode, *ast.MappingValueNode, *ast.SequenceNode:
			ps.shape = true
			ps.add(nodeLine(n), path, "expected a single value, got %s", n.Type())
		}
	}
}

// checkText decodes a scalar meant for an encoding.TextUnmarshaler (a Size), because goccy's
// decoder reports that error without its position.
func (ps *problems) checkText(n ast.Node, t reflect.Type, path string) {
	s, ok := n.(ast.ScalarNode)
	if !ok {
		ps.shape = true
		ps.add(nodeLine(n), path, "expected a single value, got %s", n.Type())
		return
	}
	text := fmt.Sprint(s.GetValue())
	if err := reflect.New(t).Interface().(interface{ UnmarshalText([]byte) error }).UnmarshalText([]byte(text)); err != nil {
		ps.shape = true
		ps.add(nodeLine(n), path, "%v", err)
	}
}

var textUnmarshaler = reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()

func mappingValues(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch v := n.(type) {
	case *ast.MappingNode:
		return v.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{v}, true
	}
	return nil, false
}

func keyString(k ast.MapKeyNode) string {
	if tk := k.GetToken(); tk != nil {
		return tk.Value
	}
	return k.String()
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
