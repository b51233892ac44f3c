package infra_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// The templates this folder holds: the root and its nested stacks, in deployment order.
var templateNames = []string{"ferry.yaml", "storage.yaml", "pipeline.yaml", "gateway.yaml", "monitoring.yaml"}

// template is a CloudFormation template of infra/, short-form tags (!Ref, !Sub ...) expanded to
// their JSON form ({"Ref": ...}, {"Fn::Sub": ...}), as CloudFormation reads them.
type template struct {
	Name string
	Raw  []byte
	Doc  map[string]any
}

func loadTemplate(t testing.TB, name string) *template {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := parseTemplate(raw)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &template{Name: name, Raw: raw, Doc: doc}
}

func parseTemplate(raw []byte) (map[string]any, error) {
	f, err := parser.ParseBytes(raw, 0)
	if err != nil {
		return nil, err
	}
	if len(f.Docs) != 1 {
		return nil, fmt.Errorf("want one YAML document, got %d", len(f.Docs))
	}
	v, err := yamlValue(f.Docs[0].Body)
	if err != nil {
		return nil, err
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("template is not a mapping")
	}
	return doc, nil
}

func yamlValue(n ast.Node) (any, error) {
	switch n := n.(type) {
	case *ast.MappingNode:
		m := map[string]any{}
		for _, mv := range n.Values {
			k, v, err := yamlPair(mv)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	case *ast.MappingValueNode:
		k, v, err := yamlPair(n)
		if err != nil {
			return nil, err
		}
		return map[string]any{k: v}, nil
	case *ast.SequenceNode:
		l := []any{}
		for _, e := range n.Values {
			v, err := yamlValue(e)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case *ast.StringNode:
		return n.Value, nil
	case *ast.LiteralNode:
		return n.Value.Value, nil
	case *ast.IntegerNode:
		switch v := n.Value.(type) {
		case int64:
			return float64(v), nil
		case uint64:
			return float64(v), nil
		}
		return nil, fmt.Errorf("line %d: integer %v", n.GetToken().Position.Line, n.Value)
	case *ast.FloatNode:
		return n.Value, nil
	case *ast.BoolNode:
		return n.Value, nil
	case *ast.NullNode:
		return nil, nil
	case *ast.TagNode:
		v, err := yamlValue(n.Value)
		if err != nil {
			return nil, err
		}
		return expandTag(n.Start.Value, v, n.GetToken().Position.Line)
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node %T", n.GetToken().Position.Line, n)
}

func yamlPair(mv *ast.MappingValueNode) (string, any, error) {
	var k string
	switch key := mv.Key.(type) {
	case *ast.StringNode:
		k = key.Value
	default:
		k = key.GetToken().Value
	}
	v, err := yamlValue(mv.Value)
	return k, v, err
}

// expandTag turns CloudFormation's short form into the long one.
func expandTag(tag string, v any, line int) (any, error) {
	name := strings.TrimPrefix(tag, "!")
	switch name {
	case "Ref", "Condition":
		return map[string]any{name: v}, nil
	case "GetAtt":
		if s, ok := v.(string); ok {
			id, attr, ok := strings.Cut(s, ".")
			if !ok {
				return nil, fmt.Errorf("line %d: !GetAtt %q wants Resource.Attribute", line, s)
			}
			v = []any{id, attr}
		}
		return map[string]any{"Fn::GetAtt": v}, nil
	case "Sub", "Join", "Select", "Split", "If", "Equals", "Not", "And", "Or", "FindInMap",
		"Base64", "Cidr", "GetAZs", "ImportValue":
		return map[string]any{"Fn::" + name: v}, nil
	}
	return nil, fmt.Errorf("line %d: unknown tag %s", line, tag)
}

func (tp *template) section(name string) map[string]any {
	m, _ := tp.Doc[name].(map[string]any)
	return m
}

// resource returns the resource id, failing the test if there is none.
func (tp *template) resource(t testing.TB, id string) map[string]any {
	t.Helper()
	r, ok := tp.section("Resources")[id].(map[string]any)
	if !ok {
		t.Fatalf("%s: no resource %s", tp.Name, id)
	}
	return r
}

// ofType returns the ids of the resources of type typ, sorted.
func (tp *template) ofType(typ string) []string {
	var ids []string
	for id, r := range tp.section("Resources") {
		if m, ok := r.(map[string]any); ok && m["Type"] == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// noValue is AWS::NoValue: the property or list element disappears.
type noValue struct{}

// evalCtx evaluates intrinsic functions the way CloudFormation does for one stack, given its
// parameter values and how its resources' Ref and GetAtt resolve.
type evalCtx struct {
	name   string
	params map[string]any // string or []string
	conds  map[string]bool
	ref    func(id string) (any, error)
	getAtt func(id, attr string) (any, error)
}

var pseudo = map[string]string{
	"AWS::AccountId": "123456789012", "AWS::Region": "us-east-1", "AWS::Partition": "aws",
	"AWS::URLSuffix": "amazonaws.com",
}

// newEvalCtx takes tp's parameter defaults, then overrides; resources resolve to placeholders
// ("ref:Id", "getatt:Id.Attr") unless ref/getAtt are set afterwards.
func newEvalCtx(t testing.TB, tp *template, overrides map[string]string) *evalCtx {
	t.Helper()
	c := &evalCtx{name: tp.Name, params: map[string]any{}, conds: map[string]bool{}}
	c.ref = func(id string) (any, error) { return "ref:" + id, nil }
	c.getAtt = func(id, attr string) (any, error) { return "getatt:" + id + "." + attr, nil }
	for name, p := range tp.section("Parameters") {
		pm := p.(map[string]any)
		val, ok := overrides[name]
		if !ok {
			d, has := pm["Default"]
			if !has {
				t.Fatalf("%s: parameter %s has no default and no value", tp.Name, name)
			}
			val = scalarString(d)
		}
		typ, _ := pm["Type"].(string)
		if typ == "CommaDelimitedList" || strings.HasPrefix(typ, "List<") {
			c.params[name] = strings.Split(val, ",")
		} else {
			c.params[name] = val
		}
	}
	for name := range overrides {
		if _, ok := tp.section("Parameters")[name]; !ok {
			t.Fatalf("%s: no parameter %s", tp.Name, name)
		}
	}
	for name := range tp.section("Conditions") {
		v, err := c.condition(tp, name, map[string]bool{})
		if err != nil {
			t.Fatalf("%s: condition %s: %v", tp.Name, name, err)
		}
		c.conds[name] = v
	}
	return c
}

func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return fmt.Sprint(x)
	case bool:
		return fmt.Sprint(x)
	}
	return fmt.Sprint(v)
}

func (c *evalCtx) condition(tp *template, name string, seen map[string]bool) (bool, error) {
	if v, ok := c.conds[name]; ok {
		return v, nil
	}
	if seen[name] {
		return false, fmt.Errorf("condition %s refers to itself", name)
	}
	seen[name] = true
	def, ok := tp.section("Conditions")[name]
	if !ok {
		return false, fmt.Errorf("no condition %s", name)
	}
	var eval func(v any) (bool, error)
	eval = func(v any) (bool, error) {
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			return false, fmt.Errorf("condition function expected, got %v", v)
		}
		for fn, arg := range m {
			args, _ := arg.([]any)
			switch fn {
			case "Condition":
				return c.condition(tp, arg.(string), seen)
			case "Fn::Equals":
				a, err := c.eval(args[0])
				if err != nil {
					return false, err
				}
				b, err := c.eval(args[1])
				if err != nil {
					return false, err
				}
				return scalarString(a) == scalarString(b), nil
			case "Fn::Not":
				x, err := eval(args[0])
				return !x, err
			case "Fn::And", "Fn::Or":
				and := fn == "Fn::And"
				for _, a := range args {
					x, err := eval(a)
					if err != nil {
						return false, err
					}
					if x != and {
						return x, nil
					}
				}
				return and, nil
			}
			return false, fmt.Errorf("unsupported condition function %s", fn)
		}
		panic("unreachable")
	}
	v, err := eval(def)
	if err == nil {
		c.conds[name] = v
	}
	return v, err
}

// eval resolves every intrinsic function in v; noValue{} stands for AWS::NoValue.
func (c *evalCtx) eval(v any) (any, error) {
	switch x := v.(type) {
	case []any:
		out := []any{}
		for _, e := range x {
			r, err := c.eval(e)
			if err != nil {
				return nil, err
			}
			if _, skip := r.(noValue); !skip {
				out = append(out, r)
			}
		}
		return out, nil
	case map[string]any:
		if len(x) == 1 {
			for k, arg := range x {
				if k == "Ref" || strings.HasPrefix(k, "Fn::") {
					return c.fn(k, arg)
				}
			}
		}
		out := map[string]any{}
		for k, e := range x {
			r, err := c.eval(e)
			if err != nil {
				return nil, err
			}
			if _, skip := r.(noValue); !skip {
				out[k] = r
			}
		}
		return out, nil
	}
	return v, nil
}

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

func (c *evalCtx) fn(name string, arg any) (any, error) {
	args, _ := arg.([]any)
	str := func(v any) (string, error) {
		r, err := c.eval(v)
		if err != nil {
			return "", err
		}
		switch s := r.(type) {
		case string:
			return s, nil
		case float64, bool:
			return scalarString(s), nil
		}
		return "", fmt.Errorf("%s: want a string, got %v", name, r)
	}
	list := func(v any) ([]string, error) {
		r, err := c.eval(v)
		if err != nil {
			return nil, err
		}
		switch l := r.(type) {
		case []string:
			return l, nil
		case []any:
			var out []string
			for _, e := range l {
				out = append(out, scalarString(e))
			}
			return out, nil
		}
		return nil, fmt.Errorf("%s: want a list, got %v", name, r)
	}
	switch name {
	case "Ref":
		id := arg.(string)
		if id == "AWS::NoValue" {
			return noValue{}, nil
		}
		if id == "AWS::StackName" {
			return c.name, nil
		}
		if v, ok := pseudo[id]; ok {
			return v, nil
		}
		if v, ok := c.params[id]; ok {
			return v, nil
		}
		return c.ref(id)
	case "Fn::GetAtt":
		return c.getAtt(args[0].(string), args[1].(string))
	case "Fn::If":
		cond, known := c.conds[args[0].(string)]
		if !known {
			return nil, fmt.Errorf("Fn::If: no condition %v", args[0])
		}
		if cond {
			return c.eval(args[1])
		}
		return c.eval(args[2])
	case "Fn::Join":
		parts, err := list(args[1])
		if err != nil {
			return nil, err
		}
		return strings.Join(parts, args[0].(string)), nil
	case "Fn::Split":
		s, err := str(args[1])
		if err != nil {
			return nil, err
		}
		return strings.Split(s, args[0].(string)), nil
	case "Fn::Select":
		idx, err := str(args[0])
		if err != nil {
			return nil, err
		}
		l, err := list(args[1])
		if err != nil {
			return nil, err
		}
		var i int
		if _, err := fmt.Sscan(idx, &i); err != nil || i < 0 || i >= len(l) {
			return nil, fmt.Errorf("Fn::Select: index %s out of %d", idx, len(l))
		}
		return l[i], nil
	case "Fn::Sub":
		tmpl, vars := "", map[string]any{}
		switch a := arg.(type) {
		case string:
			tmpl = a
		case []any:
			tmpl = a[0].(string)
			for k, v := range a[1].(map[string]any) {
				r, err := c.eval(v)
				if err != nil {
					return nil, err
				}
				vars[k] = r
			}
		}
		var ferr error
		out := subVar.ReplaceAllStringFunc(tmpl, func(m string) string {
			name := m[2 : len(m)-1]
			if strings.HasPrefix(name, "!") {
				return "${" + name[1:] + "}"
			}
			var r any
			var err error
			if v, ok := vars[name]; ok {
				r = v
			} else if id, attr, ok := strings.Cut(name, "."); ok {
				r, err = c.getAtt(id, attr)
			} else {
				r, err = c.fn("Ref", name)
			}
			if err != nil {
				ferr = err
				return ""
			}
			return scalarString(r)
		})
		return out, ferr
	}
	return nil, fmt.Errorf("unsupported intrinsic function %s", name)
}

// evalResource returns resource id's properties with every intrinsic resolved, or nil when the
// resource's condition is false.
func (c *evalCtx) evalResource(t testing.TB, tp *template, id string) map[string]any {
	t.Helper()
	r := tp.resource(t, id)
	if cond, ok := r["Condition"].(string); ok && !c.conds[cond] {
		return nil
	}
	props, err := c.eval(r["Properties"])
	if err != nil {
		t.Fatalf("%s: %s: %v", tp.Name, id, err)
	}
	m, _ := props.(map[string]any)
	return m
}

// jsonString is v as compact JSON, for comparisons and messages.
func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// repoRoot is the module root (the tests run in infra/).
func repoRoot(t testing.TB) string {
	t.Helper()
	abs, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
