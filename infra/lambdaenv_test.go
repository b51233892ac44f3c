package infra_test

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// Variables a Lambda binary reads that the template leaves unset on purpose.
var lambdaEnvUnset = map[string]string{
	"LAMBDA_TASK_ROOT":    "set by the Lambda runtime",
	"S3_FORCE_PATH_STYLE": "only for S3-compatible endpoints, never on AWS",
}

// TestLambdaEnvironment checks each function's environment against the variables its binary
// reads (os.Getenv and os.LookupEnv in the module's packages it links, directly or through a
// helper that passes its argument on): every variable set is read, every variable read is set.
func TestLambdaEnvironment(t *testing.T) {
	tp := loadTemplate(t, "pipeline.yaml")
	c := newEvalCtx(t, tp, childParams(t, "Pipeline", nil))
	for fn, bin := range map[string]string{"TransformFunction": "./pipeline/cmd/transform", "NotifyFunction": "./pipeline/cmd/notify"} {
		t.Run(fn, func(t *testing.T) {
			read := envReads(t, bin)
			set := at(c.evalResource(t, tp, fn), "Environment", "Variables").(map[string]any)
			for _, v := range sortedKeys(set) {
				if _, ok := read[v]; !ok {
					t.Errorf("%s sets %s, which %s never reads", fn, v, bin)
				}
			}
			for _, v := range sortedKeys(read) {
				_, isSet := set[v]
				why, unset := lambdaEnvUnset[v]
				switch {
				case !isSet && !unset:
					t.Errorf("%s reads %s (%s) and %s does not set it", bin, v, read[v], fn)
				case isSet && unset:
					t.Errorf("%s sets %s, which should be left to %s", fn, v, why)
				case isSet:
					t.Logf("%s = %v (read at %s)", v, set[v], read[v])
				default:
					t.Logf("%s unset: %s", v, why)
				}
			}
		})
	}
}

// envReads returns the environment variables the module's packages linked into bin read, with
// where.
func envReads(t *testing.T, bin string) map[string]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Dir,GoFiles,Module", bin)
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", bin, err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p goListPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != modulePath {
			continue
		}
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	isGetenv := func(call *ast.CallExpr) bool {
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return false
		}
		pkg, ok := sel.X.(*ast.Ident)
		return ok && pkg.Name == "os" && (sel.Sel.Name == "Getenv" || sel.Sel.Name == "LookupEnv")
	}
	// Helpers whose first parameter is the name they look up: func env(name, def string).
	helpers := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil || len(fd.Type.Params.List) == 0 || len(fd.Type.Params.List[0].Names) == 0 {
				continue
			}
			first := fd.Type.Params.List[0].Names[0].Name
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				if call, ok := n.(*ast.CallExpr); ok && isGetenv(call) && len(call.Args) == 1 {
					if id, ok := call.Args[0].(*ast.Ident); ok && id.Name == first {
						helpers[fd.Name.Name] = true
					}
				}
				return true
			})
		}
	}
	reads := map[string]string{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			id, isHelper := call.Fun.(*ast.Ident)
			if !isGetenv(call) && !(isHelper && helpers[id.Name]) {
				return true
			}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				name, _ := strconv.Unquote(lit.Value)
				if _, seen := reads[name]; !seen {
					p := fset.Position(call.Pos())
					reads[name] = filepath.Join(filepath.Base(filepath.Dir(p.Filename)), filepath.Base(p.Filename)) + ":" + strconv.Itoa(p.Line)
				}
			}
			return true
		})
	}
	if len(reads) == 0 {
		t.Fatalf("%s reads no environment variable: the scan is broken", bin)
	}
	return reads
}
