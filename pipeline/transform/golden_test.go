package transform

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/ from the current output")

// run builds steps from the default registry and chains in through them, collecting every
// output (name and bytes) until the first error.
func run(t testing.TB, ctx context.Context, in File, steps ...Step) ([]File, [][]byte, error) {
	t.Helper()
	ts := make([]Transform, len(steps))
	for i, s := range steps {
		tr, err := Default().New(s)
		if err != nil {
			t.Fatalf("New(%v): %v", s, err)
		}
		ts[i] = tr
	}
	var files []File
	var bodies [][]byte
	err := Chain(ctx, ts, in, func(f File) error {
		b, err := io.ReadAll(f.Body)
		files = append(files, f)
		bodies = append(bodies, b)
		return err
	})
	return files, bodies, err
}

func step(name string, kv ...any) Step {
	s := Step{Name: name, Options: map[string]any{}}
	for i := 0; i < len(kv); i += 2 {
		s.Options[kv[i].(string)] = kv[i+1]
	}
	return s
}

// TestGolden runs each transform over an input in testdata/ and compares the output with
// testdata/golden/<case>.out, or the Rejection with testdata/golden/<case>.err.
func TestGolden(t *testing.T) {
	tests := []struct {
		name     string
		input    string
		steps    []Step
		wantName string
		reject   bool
	}{
		{"copy", "basic.csv", []Step{step("copy")}, "basic.csv", false},
		{"csv-basic", "basic.csv", []Step{step("csv-to-jsonl")}, "basic.jsonl", false},
		{"csv-delimiter-quote", "semicolon.csv", []Step{step("csv-to-jsonl", "delimiter", ";", "quote", "'")}, "semicolon.jsonl", false},
		{"csv-tab-no-quote", "tab.tsv", []Step{step("csv-to-jsonl", "delimiter", "\t", "quote", "")}, "tab.jsonl", false},
		{"csv-header-list", "noheader.csv", []Step{step("csv-to-jsonl", "header", []any{"n", "letter"})}, "noheader.jsonl", false},
		{"csv-empty", "empty.csv", []Step{step("csv-to-jsonl")}, "empty.jsonl", false},
		{"csv-header-only", "header-only.csv", []Step{step("csv-to-jsonl")}, "header-only.jsonl", false},
		{"csv-unterminated", "unterminated.csv", []Step{step("csv-to-jsonl")}, "unterminated.jsonl", true},
		{"csv-ragged", "ragged.csv", []Step{step("csv-to-jsonl")}, "ragged.jsonl", true},
		{"csv-bad-quote", "badquote.csv", []Step{step("csv-to-jsonl")}, "badquote.jsonl", true},
		{"csv-duplicate-header", "dup-header.csv", []Step{step("csv-to-jsonl")}, "dup-header.jsonl", true},
		{"csv-wrong-charset", "latin1.csv", []Step{step("csv-to-jsonl")}, "latin1.jsonl", true},
		{"csv-latin1-converted", "latin1.csv", []Step{step("charset", "from", "latin1"), step("csv-to-jsonl")}, "latin1.jsonl", false},
		{"charset-cp1252", "cp1252.txt", []Step{step("charset")}, "cp1252.txt", false},
		{"charset-latin1", "cp1252.txt", []Step{step("charset", "from", "ISO-8859-1")}, "cp1252.txt", false},
		{"charset-empty", "empty.csv", []Step{step("charset")}, "empty.csv", false},
		{"newlines", "crlf.txt", []Step{step("newlines")}, "crlf.txt", false},
		{"newlines-empty", "empty.csv", []Step{step("newlines")}, "empty.csv", false},
		{"gunzip-multistream", "data.csv.gz", []Step{step("gunzip")}, "data.csv", false},
		{"gunzip-corrupt", "corrupt.csv.gz", []Step{step("gunzip")}, "corrupt.csv", true},
		{"gunzip-empty", "empty.csv", []Step{step("gunzip")}, "", true},
		{"validate-ok", "required.csv", []Step{step("validate-csv", "required_columns", []any{"id", "email"}, "columns", 3)}, "required.csv", false},
		{"validate-missing-column", "required.csv", []Step{step("validate-csv", "required_columns", []any{"id", "phone"})}, "required.csv", true},
		{"validate-columns", "required.csv", []Step{step("validate-csv", "columns", 4)}, "required.csv", true},
		{"validate-ragged", "ragged.csv", []Step{step("validate-csv")}, "ragged.csv", true},
		{"validate-unterminated", "unterminated.csv", []Step{step("validate-csv")}, "unterminated.csv", true},
		{"validate-empty-required", "empty.csv", []Step{step("validate-csv", "required_columns", []any{"id"})}, "empty.csv", true},
		{"validate-empty", "empty.csv", []Step{step("validate-csv")}, "empty.csv", false},
		{"checksum-sha256", "basic.csv", []Step{step("verify-checksum", "expected", "d0f0a8af1f5a8cc6fb0d2ccd6a35b8e71fc0c1765a7a4fa8ed3c1a8dc83ee5d4")}, "basic.csv", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tc.input))
			if err != nil {
				t.Fatal(err)
			}
			files, bodies, err := run(t, context.Background(), File{Name: tc.input, Body: bytes.NewReader(in)}, tc.steps...)
			var rej *Rejection
			if isRej := errors.As(err, &rej); err != nil && !isRej {
				t.Fatalf("error %v is not a Rejection", err)
			}
			if (err != nil) != tc.reject {
				t.Fatalf("error = %v, want rejection: %v", err, tc.reject)
			}
			golden := filepath.Join("testdata", "golden", tc.name+".out")
			got := []byte(nil)
			if tc.reject {
				golden = filepath.Join("testdata", "golden", tc.name+".err")
				got = []byte(rej.Error() + "\n")
			} else {
				if len(files) != 1 {
					t.Fatalf("%d outputs, want 1", len(files))
				}
				if files[0].Name != tc.wantName {
					t.Errorf("output name %q, want %q", files[0].Name, tc.wantName)
				}
				got = bodies[0]
			}
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}
