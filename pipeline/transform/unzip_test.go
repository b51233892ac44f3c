package transform

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"hash/crc32"
	"os"
	"strings"
	"testing"
)

type entry struct {
	name string
	body []byte
}

func zipOf(t testing.TB, entries ...entry) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnzip(t *testing.T) {
	tmp := t.TempDir()
	archive := zipOf(t,
		entry{"a.csv", []byte("k,v\n1,2\n")},
		entry{"dir/", nil},
		entry{"dir/b.csv", []byte("k,v\n3,4\n5,6\n")},
	)
	ctx := WithCounter(context.Background())
	files, bodies, err := run(t, ctx, File{Name: "batch.zip", Body: bytes.NewReader(archive)},
		step("unzip", "temp_dir", tmp), step("csv-to-jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, f := range files {
		got = append(got, f.Name+"="+string(bodies[i]))
	}
	want := []string{"a.jsonl={\"k\":\"1\",\"v\":\"2\"}\n", "dir/b.jsonl={\"k\":\"3\",\"v\":\"4\"}\n{\"k\":\"5\",\"v\":\"6\"}\n"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("outputs %q\nwant %q", got, want)
	}
	if Records(ctx) != 3 {
		t.Errorf("Records = %d, want 3", Records(ctx))
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("spool files left behind: %v", left)
	}
}

func TestUnzipRejects(t *testing.T) {
	zeros := make([]byte, 8<<20)
	tests := []struct {
		name    string
		archive []byte
		opts    []any
		want    string
	}{
		{"not a zip", []byte("id,v\n1,2\n"), nil, "zip: "},
		{"empty", nil, nil, "zip: "},
		{"parent", zipOf(t, entry{"ok.csv", []byte("x")}, entry{"../evil.csv", []byte("x")}), nil, `unsafe entry name "../evil.csv"`},
		{"nested parent", zipOf(t, entry{"a/../../evil.csv", []byte("x")}), nil, "unsafe entry name"},
		{"absolute", zipOf(t, entry{"/etc/passwd", []byte("x")}), nil, "unsafe entry name"},
		{"backslash", zipOf(t, entry{`..\evil.csv`, []byte("x")}), nil, "unsafe entry name"},
		{"drive", zipOf(t, entry{`C:evil.csv`, []byte("x")}), nil, "unsafe entry name"},
		{"bomb ratio", zipOf(t, entry{"zeros.csv", zeros}), []any{"max_ratio", 100}, "zip bomb"},
		{"entry too big", zipOf(t, entry{"zeros.csv", zeros}), []any{"max_entry_bytes", 1 << 20}, "at most 1048576 allowed"},
		{"total too big", zipOf(t, entry{"a", zeros}, entry{"b", zeros}), []any{"max_total_bytes", 12 << 20, "max_ratio", 10000}, "entries total"},
		{"header lies", lyingZip(t, zeros), nil, `entry "small.csv"`},
		{"too many entries", zipOf(t, entry{"a", nil}, entry{"b", nil}, entry{"c", nil}), []any{"max_entries", 2}, "3 entries"},
		{"archive too big", zipOf(t, entry{"a", []byte(strings.Repeat("x", 1000))}), []any{"max_bytes", 100}, "archive larger"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			files, _, err := run(t, context.Background(), File{Name: "x.zip", Body: bytes.NewReader(tc.archive)},
				step("unzip", append([]any{"temp_dir", tmp}, tc.opts...)...))
			var rej *Rejection
			if !errors.As(err, &rej) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a Rejection containing %q", err, tc.want)
			}
			// A lying header is only found while its entry is read, after it was emitted.
			if len(files) != 0 && tc.name != "header lies" {
				t.Errorf("a rejected archive emitted %d outputs", len(files))
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("spool files left behind: %v", left)
			}
		})
	}
}

// TestUnzipCorruptEntry: a flipped byte inside an entry's data is found while reading it
// (CRC or deflate error) and is a Rejection, not a transient error.
func TestUnzipCorruptEntry(t *testing.T) {
	archive := zipOf(t, entry{"a.csv", bytes.Repeat([]byte("id,value,comment\n1,2,three\n"), 1000)})
	archive[60] ^= 0xff // inside the first entry's compressed data
	_, _, err := run(t, context.Background(), File{Name: "x.zip", Body: bytes.NewReader(archive)}, step("unzip", "temp_dir", t.TempDir()))
	if !errors.As(err, new(*Rejection)) {
		t.Fatalf("err = %v, want a Rejection", err)
	}
}

// lyingZip stores body deflated under a header that claims it is 10 bytes: only reading can
// tell, so the size must be enforced while reading, not only from the directory.
func lyingZip(t testing.TB, body []byte) []byte {
	var comp bytes.Buffer
	fw, _ := flate.NewWriter(&comp, flate.BestCompression)
	fw.Write(body)
	fw.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "small.csv", Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(body),
		CompressedSize64: uint64(comp.Len()), UncompressedSize64: 10})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(comp.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
