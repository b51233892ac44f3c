package infra_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The AWS operations a binary calls are read from its code, not listed by hand: every SDK
// client (*<service>.Client of aws-sdk-go-v2) the module's code creates reaches the rest of the
// code only through the narrow interfaces declared next to the code that calls them (s3store.API,
// handler.S3API, ledger.API, notify.SNSAPI, putevents.API, ...). So the operations a
// binary can call are: the operation methods of every interface a client flows into (a call
// argument, a struct field, an assignment, a return), plus every operation called on a client
// directly. A type assertion back to a client, or a client embedded in a struct, would escape
// this bound and fails the analysis.

const modulePath = "github.com/ferrygw/ferry"
const sdkServicePrefix = "github.com/aws/aws-sdk-go-v2/service/"

// sdkCall is one operation a binary can call, and where the code lets it.
type sdkCall struct {
	Op    string // "s3:GetObject" (SDK service package name : operation)
	Where string // file:line of the flow or call
}

type goListPackage struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Export     string
	Standard   bool
	Module     *struct{ Path string }
}

// sdkOperations returns the operations binary pkg (e.g. ./pipeline/cmd/transform) can call, by
// operation, with the first place that allows each.
func sdkOperations(t *testing.T, pkg string) map[string]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-export", "-json=ImportPath,Dir,GoFiles,Export,Standard,Module", pkg)
	cmd.Dir = repoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", pkg, err, stderr.String())
	}
	exports := map[string]string{}
	var ours []goListPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p goListPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		exports[p.ImportPath] = p.Export
		if p.Module != nil && p.Module.Path == modulePath {
			ours = append(ours, p)
		}
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok || f == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
	ops := map[string]string{}
	for _, p := range ours {
		var files []*ast.File
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Uses: map[*ast.Ident]types.Object{},
			Defs: map[*ast.Ident]types.Object{}, Selections: map[*ast.SelectorExpr]*types.Selection{}}
		conf := types.Config{Importer: imp}
		if _, err := conf.Check(p.ImportPath, fset, files, info); err != nil {
			t.Fatalf("type-check %s: %v", p.ImportPath, err)
		}
		a := &flowAnalysis{fset: fset, info: info, ops: ops}
		for _, f := range files {
			a.file(f)
		}
		for _, e := range a.escapes {
			t.Errorf("%s: the operations this client allows cannot be bounded: %s", pkg, e)
		}
	}
	return ops
}

type flowAnalysis struct {
	fset    *token.FileSet
	info    *types.Info
	ops     map[string]string
	escapes []string
}

// clientService returns the SDK service of t when t is *<service>.Client.
func clientService(t types.Type) (string, *types.Named, bool) {
	if p, ok := t.(*types.Pointer); ok {
		t = p.Elem()
	}
	n, ok := t.(*types.Named)
	if !ok || n.Obj().Pkg() == nil || n.Obj().Name() != "Client" {
		return "", nil, false
	}
	svc, ok := strings.CutPrefix(n.Obj().Pkg().Path(), sdkServicePrefix)
	return svc, n, ok && !strings.Contains(svc, "/")
}

// isOperation reports whether method name of client is an API operation: (ctx, *<Name>Input,
// ...func(*Options)) (*<Name>Output, error).
func isOperation(client *types.Named, name string) bool {
	obj, _, _ := types.LookupFieldOrMethod(types.NewPointer(client), true, client.Obj().Pkg(), name)
	fn, ok := obj.(*types.Func)
	if !ok {
		return false
	}
	sig := fn.Type().(*types.Signature)
	if sig.Params().Len() < 2 {
		return false
	}
	in, ok := sig.Params().At(1).Type().(*types.Pointer)
	if !ok {
		return false
	}
	n, ok := in.Elem().(*types.Named)
	return ok && n.Obj().Name() == name+"Input"
}

func (a *flowAnalysis) pos(n ast.Node) string {
	p := a.fset.Position(n.Pos())
	return fmt.Sprintf("%s:%d", filepath.Join(filepath.Base(filepath.Dir(p.Filename)), filepath.Base(p.Filename)), p.Line)
}

func (a *flowAnalysis) record(op string, n ast.Node) {
	if _, seen := a.ops[op]; !seen {
		a.ops[op] = a.pos(n)
	}
}

// flow notes that expression e (if it is a client) reaches a slot of type to.
func (a *flowAnalysis) flow(e ast.Expr, to types.Type) {
	if to == nil || isNil(a.info, e) {
		return
	}
	svc, client, ok := clientService(a.info.TypeOf(e))
	if !ok {
		return
	}
	if _, _, same := clientService(to); same {
		return // a client variable or field: its own uses are analysed where they appear
	}
	iface, ok := to.Underlying().(*types.Interface)
	if !ok {
		a.escapes = append(a.escapes, fmt.Sprintf("%s: a %s client flows into %s", a.pos(e), svc, to))
		return
	}
	for i := 0; i < iface.NumMethods(); i++ {
		if m := iface.Method(i); isOperation(client, m.Name()) {
			a.record(svc+":"+m.Name(), e)
		}
	}
}

func isNil(info *types.Info, e ast.Expr) bool {
	tv, ok := info.Types[e]
	return ok && tv.IsNil()
}

func (a *flowAnalysis) file(f *ast.File) {
	var results []*types.Tuple // enclosing functions' results, innermost last
	var walk func(n ast.Node) bool
	walk = func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			sig := a.info.Defs[n.Name].Type().(*types.Signature)
			results = append(results, sig.Results())
			if n.Body != nil {
				ast.Inspect(n.Body, walk)
			}
			results = results[:len(results)-1]
			return false
		case *ast.FuncLit:
			sig := a.info.TypeOf(n).(*types.Signature)
			results = append(results, sig.Results())
			ast.Inspect(n.Body, walk)
			results = results[:len(results)-1]
			return false
		case *ast.ReturnStmt:
			if len(results) > 0 && len(n.Results) == results[len(results)-1].Len() {
				for i, r := range n.Results {
					a.flow(r, results[len(results)-1].At(i).Type())
				}
			}
		case *ast.CallExpr:
			a.call(n)
		case *ast.SelectorExpr:
			if sel := a.info.Selections[n]; sel != nil && sel.Kind() != types.FieldVal {
				if svc, client, ok := clientService(sel.Recv()); ok && isOperation(client, n.Sel.Name) {
					a.record(svc+":"+n.Sel.Name, n)
				}
			}
			if sel := a.info.Selections[n]; sel != nil && sel.Kind() == types.FieldVal && len(sel.Index()) > 1 {
				if _, _, ok := clientService(sel.Type()); ok {
					a.escapes = append(a.escapes, a.pos(n)+": a client reached through an embedded field")
				}
			}
		case *ast.CompositeLit:
			a.composite(n)
		case *ast.AssignStmt:
			if n.Tok != token.DEFINE && len(n.Lhs) == len(n.Rhs) {
				for i := range n.Lhs {
					a.flow(n.Rhs[i], a.info.TypeOf(n.Lhs[i]))
				}
			}
		case *ast.ValueSpec:
			blank := true
			for _, id := range n.Names {
				blank = blank && id.Name == "_"
			}
			if blank {
				return false // var _ API = (*s3.Client)(nil): a compile-time check, not a flow
			}
			if n.Type != nil {
				for _, v := range n.Values {
					a.flow(v, a.info.TypeOf(n.Type))
				}
			}
		case *ast.SendStmt:
			if ch, ok := a.info.TypeOf(n.Chan).Underlying().(*types.Chan); ok {
				a.flow(n.Value, ch.Elem())
			}
		case *ast.TypeAssertExpr:
			if n.Type != nil {
				if _, _, ok := clientService(a.info.TypeOf(n.Type)); ok {
					a.escapes = append(a.escapes, a.pos(n)+": a type assertion to an SDK client")
				}
			}
		}
		return true
	}
	for _, d := range f.Decls {
		ast.Inspect(d, walk)
	}
}

func (a *flowAnalysis) call(c *ast.CallExpr) {
	tv := a.info.Types[c.Fun]
	if tv.IsType() { // a conversion T(x)
		if len(c.Args) == 1 {
			a.flow(c.Args[0], tv.Type)
		}
		return
	}
	sig, ok := tv.Type.(*types.Signature)
	if !ok {
		return
	}
	params := sig.Params()
	for i, arg := range c.Args {
		var pt types.Type
		switch {
		case sig.Variadic() && i >= params.Len()-1:
			pt = params.At(params.Len() - 1).Type()
			if c.Ellipsis == token.NoPos {
				pt = pt.(*types.Slice).Elem()
			}
		case i < params.Len():
			pt = params.At(i).Type()
		}
		a.flow(arg, pt)
	}
}

func (a *flowAnalysis) composite(c *ast.CompositeLit) {
	t := a.info.TypeOf(c)
	if t == nil {
		return
	}
	switch u := t.Underlying().(type) {
	case *types.Struct:
		for i, el := range c.Elts {
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				name := kv.Key.(*ast.Ident).Name
				for j := 0; j < u.NumFields(); j++ {
					if f := u.Field(j); f.Name() == name {
						if f.Embedded() {
							if _, _, ok := clientService(f.Type()); ok {
								a.escapes = append(a.escapes, a.pos(kv)+": a client embedded in a struct")
							}
						}
						a.flow(kv.Value, f.Type())
					}
				}
			} else if i < u.NumFields() {
				a.flow(el, u.Field(i).Type())
			}
		}
	case *types.Slice:
		for _, el := range c.Elts {
			a.flow(elemValue(el), u.Elem())
		}
	case *types.Array:
		for _, el := range c.Elts {
			a.flow(elemValue(el), u.Elem())
		}
	case *types.Map:
		for _, el := range c.Elts {
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				a.flow(kv.Value, u.Elem())
			}
		}
	}
}

func elemValue(e ast.Expr) ast.Expr {
	if kv, ok := e.(*ast.KeyValueExpr); ok {
		return kv.Value
	}
	return e
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
