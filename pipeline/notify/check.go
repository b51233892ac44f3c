package notify

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// checkFields walks a parsed template and reports every field or method it names that the data
// type does not have, in every branch: text/template itself only finds out when a branch runs,
// which for a rejection notice may be the first bad file in production. It follows the type of
// "." through range and with, variables declared in pipelines, and the result types of the
// template's functions; where a type cannot be known statically (an interface, a map value, the
// result of index or and/or) it stops checking that chain rather than guess.
func checkFields(t *template.Template, data reflect.Type, funcs template.FuncMap) []error {
	c := &checker{tree: t.Tree, funcs: funcs, root: data}
	if t.Tree == nil || t.Tree.Root == nil {
		return nil
	}
	c.list(t.Tree.Root, data, map[string]reflect.Type{"$": data})
	return c.errs
}

type checker struct {
	tree  *parse.Tree
	funcs template.FuncMap
	root  reflect.Type
	errs  []error
}

// FieldError is a template naming something its data does not have, at a line of the template.
type FieldError struct {
	Line int // 1-based, in the template's text
	Msg  string
}

func (e *FieldError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

func (c *checker) fail(n parse.Node, format string, args ...any) {
	loc, _ := c.tree.ErrorContext(n) // "name:line:col"
	line := 0
	if parts := strings.Split(loc, ":"); len(parts) >= 3 {
		line, _ = strconv.Atoi(parts[len(parts)-2])
	}
	c.errs = append(c.errs, &FieldError{Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) list(l *parse.ListNode, dot reflect.Type, vars map[string]reflect.Type) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		c.node(n, dot, vars)
	}
}

func (c *checker) node(n parse.Node, dot reflect.Type, vars map[string]reflect.Type) {
	switch n := n.(type) {
	case *parse.ActionNode:
		c.pipe(n.Pipe, dot, vars)
	case *parse.IfNode:
		c.branch(&n.BranchNode, dot, vars, func(reflect.Type) reflect.Type { return dot })
	case *parse.WithNode:
		c.branch(&n.BranchNode, dot, vars, func(t reflect.Type) reflect.Type { return t })
	case *parse.RangeNode:
		inner := copyVars(vars)
		t := c.pipeNoDecl(n.Pipe, dot, inner)
		key, elem := rangeTypes(t)
		if len(n.Pipe.Decl) == 1 {
			inner[n.Pipe.Decl[0].Ident[0]] = elem
		} else if len(n.Pipe.Decl) == 2 {
			inner[n.Pipe.Decl[0].Ident[0]], inner[n.Pipe.Decl[1].Ident[0]] = key, elem
		}
		c.list(n.List, elem, inner)
		c.list(n.ElseList, dot, copyVars(vars))
	case *parse.TemplateNode:
		if n.Pipe != nil {
			c.pipe(n.Pipe, dot, vars)
		}
	}
}

// branch checks if/with: the pipeline, the body with dot as inner says, the else part with
// the outer dot. Variables declared in the pipeline live in the body and the else part.
func (c *checker) branch(b *parse.BranchNode, dot reflect.Type, vars map[string]reflect.Type, inner func(reflect.Type) reflect.Type) {
	scope := copyVars(vars)
	t := c.pipe(b.Pipe, dot, scope)
	c.list(b.List, inner(t), scope)
	c.list(b.ElseList, dot, scope)
}

// pipe checks a pipeline, records its declared variables in vars and returns its type (nil:
// unknown).
func (c *checker) pipe(p *parse.PipeNode, dot reflect.Type, vars map[string]reflect.Type) reflect.Type {
	t := c.pipeNoDecl(p, dot, vars)
	for _, v := range p.Decl {
		vars[v.Ident[0]] = t
	}
	return t
}

func (c *checker) pipeNoDecl(p *parse.PipeNode, dot reflect.Type, vars map[string]reflect.Type) reflect.Type {
	if p == nil {
		return nil
	}
	var t reflect.Type
	for _, cmd := range p.Cmds {
		t = c.command(cmd, dot, vars)
	}
	return t
}

func (c *checker) command(cmd *parse.CommandNode, dot reflect.Type, vars map[string]reflect.Type) reflect.Type {
	if len(cmd.Args) == 0 {
		return nil
	}
	for _, a := range cmd.Args[1:] {
		c.arg(a, dot, vars)
	}
	if id, ok := cmd.Args[0].(*parse.IdentifierNode); ok {
		return c.funcResult(id.Ident)
	}
	return c.arg(cmd.Args[0], dot, vars)
}

// arg returns the type of an operand, checking the fields it names.
func (c *checker) arg(n parse.Node, dot reflect.Type, vars map[string]reflect.Type) reflect.Type {
	switch n := n.(type) {
	case *parse.DotNode:
		return dot
	case *parse.FieldNode:
		return c.fields(n, dot, n.Ident)
	case *parse.VariableNode:
		t, ok := vars[n.Ident[0]]
		if !ok {
			return nil // text/template's parser already refuses undefined variables
		}
		return c.fields(n, t, n.Ident[1:])
	case *parse.ChainNode:
		return c.fields(n, c.arg(n.Node, dot, vars), n.Field)
	case *parse.PipeNode:
		return c.pipeNoDecl(n, dot, copyVars(vars))
	case *parse.IdentifierNode:
		return c.funcResult(n.Ident)
	case *parse.StringNode:
		return reflect.TypeFor[string]()
	case *parse.BoolNode:
		return reflect.TypeFor[bool]()
	case *parse.NumberNode:
		if n.IsInt {
			return reflect.TypeFor[int]()
		}
		return reflect.TypeFor[float64]()
	}
	return nil
}

// fields follows a chain of field or method names from type t.
func (c *checker) fields(n parse.Node, t reflect.Type, names []string) reflect.Type {
	for _, name := range names {
		if t == nil {
			return nil
		}
		next, ok := member(t, name)
		if !ok {
			c.fail(n, "%s has no field or method %s (see the notice fields in configs/pipeline.yaml)", typeName(t), name)
			return nil
		}
		t = next
	}
	return t
}

// member is the type of t.name: a struct field, a method (its first result), a map value.
// ok is true with a nil type when t's members cannot be known.
func member(t reflect.Type, name string) (reflect.Type, bool) {
	if m, ok := t.MethodByName(name); ok && m.Type.NumOut() > 0 {
		return m.Type.Out(0), true
	}
	if t.Kind() != reflect.Pointer {
		if m, ok := reflect.PointerTo(t).MethodByName(name); ok && m.Type.NumOut() > 0 {
			return m.Type.Out(0), true
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if f, ok := t.FieldByName(name); ok && f.IsExported() {
			return f.Type, true
		}
		return nil, false
	case reflect.Map:
		if t.Key().Kind() == reflect.String {
			return t.Elem(), true
		}
		return nil, true
	case reflect.Interface:
		return nil, true
	}
	return nil, false
}

func (c *checker) funcResult(name string) reflect.Type {
	if f, ok := c.funcs[name]; ok {
		ft := reflect.TypeOf(f)
		if ft.Kind() == reflect.Func && ft.NumOut() > 0 && ft.Out(0).Kind() != reflect.Interface {
			return ft.Out(0)
		}
		return nil
	}
	switch name {
	case "not", "eq", "ne", "lt", "le", "gt", "ge":
		return reflect.TypeFor[bool]()
	case "len":
		return reflect.TypeFor[int]()
	case "print", "printf", "println", "html", "js", "urlquery":
		return reflect.TypeFor[string]()
	}
	return nil // and, or, index, slice, call: depends on the values
}

// rangeTypes are the key and element types of ranging over t.
func rangeTypes(t reflect.Type) (key, elem reflect.Type) {
	if t == nil {
		return nil, nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return reflect.TypeFor[int](), t.Elem()
	case reflect.Map:
		return t.Key(), t.Elem()
	case reflect.Int, reflect.Int64, reflect.Int32:
		return t, t
	}
	return nil, nil
}

func copyVars(v map[string]reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type, len(v))
	for k, t := range v {
		out[k] = t
	}
	return out
}

// typeName says a type the way a template writer knows it.
func typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Notice]():
		return "the notice"
	case reflect.TypeFor[File]():
		return "a file"
	case reflect.TypeFor[Output]():
		return "an output"
	}
	return t.String()
}
