package transform

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// TestOneByteReads checks that every streaming reader gives the same bytes whatever the read
// sizes: chunk boundaries fall inside CRLF pairs, multi-byte runes, quoted fields.
func TestOneByteReads(t *testing.T) {
	tests := []struct {
		input, golden string
		steps         []Step
	}{
		{"basic.csv", "csv-basic", []Step{step("csv-to-jsonl")}},
		{"latin1.csv", "csv-latin1-converted", []Step{step("charset", "from", "latin1"), step("csv-to-jsonl")}},
		{"cp1252.txt", "charset-cp1252", []Step{step("charset")}},
		{"crlf.txt", "newlines", []Step{step("newlines")}},
		{"data.csv.gz", "gunzip-multistream", []Step{step("gunzip")}},
		{"required.csv", "validate-ok", []Step{step("validate-csv", "required_columns", []any{"email"})}},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tc.input))
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join("testdata", "golden", tc.golden+".out"))
			if err != nil {
				t.Fatal(err)
			}
			var ts []Transform
			for _, s := range tc.steps {
				tr, err := Default().New(s)
				if err != nil {
					t.Fatal(err)
				}
				ts = append(ts, tr)
			}
			var got []byte
			err = Chain(context.Background(), ts, File{Name: tc.input, Body: iotest.OneByteReader(bytes.NewReader(in))}, func(f File) error {
				got, err = io.ReadAll(iotest.OneByteReader(f.Body))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got %q\nwant %q", got, want)
			}
		})
	}
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestChain runs the chain a real route uses for a zipped spreadsheet export: gzip'd,
// Windows-1252, CRLF CSV -> JSONL, and counts the records.
func TestChain(t *testing.T) {
	csv := "name,city\r\nJos\xe9,\x93Z\xfcrich\x94\r\n\"multi\r\nline\",x\r\n"
	ctx := WithCounter(context.Background())
	files, bodies, err := run(t, ctx, File{Name: "export.csv.gz", Body: bytes.NewReader(gz(t, []byte(csv)))},
		step("gunzip"), step("charset", "from", "windows-1252"), step("newlines"), step("csv-to-jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	want := "{\"name\":\"José\",\"city\":\"“Zürich”\"}\n{\"name\":\"multi\\nline\",\"city\":\"x\"}\n"
	if len(files) != 1 || files[0].Name != "export.jsonl" || string(bodies[0]) != want {
		t.Fatalf("got %d files, %q: %q\nwant export.jsonl: %q", len(files), files[0].Name, bodies[0], want)
	}
	if n := Records(ctx); n != 2 {
		t.Errorf("Records = %d, want 2", n)
	}
	if n := Records(context.Background()); n != 0 {
		t.Errorf("Records without a counter = %d", n)
	}
}

func TestRegistryErrors(t *testing.T) {
	tests := []struct {
		step Step
		want string
	}{
		{step("nope"), `unknown transform`},
		{step("copy", "x", 1), `unknown option "x"`},
		{step("csv-to-jsonl", "delimiter", ",,"), `option delimiter`},
		{step("csv-to-jsonl", "delimiter", 5), `option delimiter: want a string`},
		{step("csv-to-jsonl", "quote", ","), `option quote`},
		{step("csv-to-jsonl", "header", false), `option header`},
		{step("csv-to-jsonl", "header", []any{"a", "a"}), `duplicate column name`},
		{step("csv-to-jsonl", "header", []any{"a", 1}), `list of strings`},
		{step("charset", "from", "ebcdic"), `unsupported charset`},
		{step("charset", "from", "utf-16"), `not a single-byte code page`},
		{step("validate-csv", "columns", "3"), `want an integer`},
		{step("validate-csv", "header", false, "required_columns", []any{"a"}), `needs header`},
		{step("verify-checksum", "algorithm", "crc32"), `unsupported checksum algorithm`},
		{step("verify-checksum", "expected", "abc"), `not a sha256 hex digest`},
		{step("unzip", "max_ratio", 0), `must be positive`},
	}
	for _, tc := range tests {
		_, err := Default().New(tc.step)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.step.Name)) {
			t.Errorf("New(%v) = %v, want an error naming the step and containing %q", tc.step, err, tc.want)
		}
	}
	// YAML decoders hand numbers over as uint64 or float64, lists as []any.
	for _, v := range []any{uint64(3), int64(3), 3, 3.0} {
		if _, err := Default().New(step("validate-csv", "columns", v)); err != nil {
			t.Errorf("columns %T: %v", v, err)
		}
	}
	r := NewRegistry()
	if err := r.Register("copy", newCopy); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("copy", newCopy); err == nil {
		t.Error("registering a name twice succeeded")
	}
	if got := strings.Join(Default().Names(), " "); got != "charset copy csv-to-jsonl gunzip newlines unzip validate-csv verify-checksum" {
		t.Errorf("Names = %s", got)
	}
}

func TestVerifyChecksum(t *testing.T) {
	data := []byte("id,v\n1,2\n")
	s := sha256.Sum256(data)
	m := md5.Sum(data)
	sha, md := hex.EncodeToString(s[:]), hex.EncodeToString(m[:])
	bg := context.Background()
	tests := []struct {
		name   string
		ctx    context.Context
		step   Step
		reject string
	}{
		{"option", bg, step("verify-checksum", "expected", strings.ToUpper(sha)), ""},
		{"context", WithChecksum(bg, Checksum{"sha256", sha}), step("verify-checksum"), ""},
		{"md5", WithChecksum(bg, Checksum{"md5", md}), step("verify-checksum", "algorithm", "md5"), ""},
		{"mismatch", WithChecksum(bg, Checksum{"sha256", strings.Repeat("0", 64)}), step("verify-checksum"), "checksum: sha256 is " + sha},
		{"no sidecar", bg, step("verify-checksum"), "no expected sha256 digest"},
		{"wrong algorithm", WithChecksum(bg, Checksum{"md5", md}), step("verify-checksum"), "the route wants sha256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, bodies, err := run(t, tc.ctx, File{Name: "a.csv", Body: bytes.NewReader(data)}, tc.step)
			var rej *Rejection
			switch {
			case tc.reject == "" && err != nil:
				t.Fatal(err)
			case tc.reject == "" && !bytes.Equal(bodies[0], data):
				t.Fatalf("body %q", bodies[0])
			case tc.reject != "" && (!errors.As(err, &rej) || !strings.Contains(err.Error(), tc.reject)):
				t.Fatalf("error %v, want a Rejection containing %q", err, tc.reject)
			}
		})
	}

	c, err := ParseSidecar(strings.NewReader("\n"+strings.ToUpper(sha)+"  a.csv\n"), "sha256")
	if err != nil || c != (Checksum{"sha256", sha}) {
		t.Errorf("ParseSidecar = %v, %v", c, err)
	}
	for _, bad := range []string{"", "xyz a.csv", md} {
		if _, err := ParseSidecar(strings.NewReader(bad), "sha256"); !errors.As(err, new(*Rejection)) {
			t.Errorf("ParseSidecar(%q) = %v, want a Rejection", bad, err)
		}
	}
}

// TestRejectionSurvivesTheSink: a sink (an S3 upload, say) may wrap the Body's read error
// without %w; Chain still reports the transform's Rejection so the file goes to quarantine.
func TestRejectionSurvivesTheSink(t *testing.T) {
	tr, err := Default().New(step("csv-to-jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	in, _ := os.ReadFile("testdata/ragged.csv")
	err = Chain(context.Background(), []Transform{tr}, File{Name: "r.csv", Body: bytes.NewReader(in)}, func(f File) error {
		_, err := io.Copy(io.Discard, f.Body)
		return fmt.Errorf("upload failed: %v", err)
	})
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Line != 3 {
		t.Fatalf("Chain = %v, want the Rejection at line 3", err)
	}
}

// TestUnreadOutputIsStillValidated: a sink that stops reading early cannot make a bad file pass.
func TestUnreadOutputIsStillValidated(t *testing.T) {
	tr, err := Default().New(step("validate-csv"))
	if err != nil {
		t.Fatal(err)
	}
	in, _ := os.ReadFile("testdata/ragged.csv")
	err = Chain(context.Background(), []Transform{tr}, File{Name: "r.csv", Body: bytes.NewReader(in)}, func(File) error { return nil })
	if !errors.As(err, new(*Rejection)) {
		t.Fatalf("Chain = %v, want a Rejection", err)
	}
}

func TestCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tr, err := Default().New(step("csv-to-jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	err = Chain(ctx, []Transform{tr}, File{Name: "big.csv", Body: newCSVGen(1 << 30)}, func(f File) error {
		buf := make([]byte, 4096)
		if _, err := f.Body.Read(buf); err != nil {
			return err
		}
		cancel()
		_, err := io.Copy(io.Discard, f.Body)
		return err
	})
	if !errors.Is(err, context.Canceled) || errors.As(err, new(*Rejection)) {
		t.Fatalf("Chain = %v, want context.Canceled", err)
	}
}

// FuzzCSVToJSONL: whatever the input, csv-to-jsonl either rejects it or writes lines that are
// each one valid JSON object with the header's keys.
func FuzzCSVToJSONL(f *testing.F) {
	for _, name := range []string{"basic.csv", "semicolon.csv", "unterminated.csv", "ragged.csv", "badquote.csv"} {
		b, _ := os.ReadFile(filepath.Join("testdata", name))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		tr, err := Default().New(step("csv-to-jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		err = Chain(context.Background(), []Transform{tr}, File{Name: "f.csv", Body: bytes.NewReader(in)}, func(f File) error {
			out, err = io.ReadAll(f.Body)
			return err
		})
		if err != nil {
			if !errors.As(err, new(*Rejection)) {
				t.Fatalf("error %v is not a Rejection", err)
			}
			return
		}
		for line := range bytes.Lines(out) {
			var m map[string]string
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
		}
	})
}

// TestCharsetCodePages: every single-byte code page of x/text by name, and the aliases clients
// write.
func TestCharsetCodePages(t *testing.T) {
	for _, c := range []struct {
		from string
		in   []byte
		want string
	}{
		{"windows-1252", []byte{0x80, 0x81, 'a'}, "€\u0081a"}, // unassigned 0x81: its C1 control
		{"cp1252", []byte{0x9c}, "œ"},
		{"latin1", []byte{0x80, 0xe9}, "\u0080é"},
		{"ISO-8859-15", []byte{0xa4}, "€"},
		{"ibm437", []byte{0x82, 0xdb}, "é█"},
		{"cp850", []byte{0x9d}, "Ø"},
		{"koi8-r", []byte{0xc1}, "а"},
	} {
		t.Run(c.from, func(t *testing.T) {
			_, outs, err := run(t, t.Context(), File{Name: "x.txt", Body: bytes.NewReader(c.in)}, step("charset", "from", c.from))
			if err != nil {
				t.Fatal(err)
			}
			if len(outs) != 1 || string(outs[0]) != c.want {
				t.Fatalf("got %q, want %q", outs, c.want)
			}
		})
	}
}
