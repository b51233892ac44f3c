package s3disk

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
)

func open(t *testing.T, dir string) *Backend {
	t.Helper()
	b, err := Open(dir, Options{MinPartSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func put(t *testing.T, b *Backend, bucket, key, body string) ObjectInfo {
	t.Helper()
	info, err := b.Put(bucket, key, nil, strings.NewReader(body), int64(len(body)), nil)
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return info
}

func read(t *testing.T, b *Backend, bucket, key string) string {
	t.Helper()
	obj, err := b.GetObject(bucket, key, nil)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	defer obj.Contents.Close()
	data, err := io.ReadAll(obj.Contents)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func keysOf(t *testing.T, b *Backend, bucket string) []string {
	t.Helper()
	var keys []string
	page := gofakes3.ListBucketPage{}
	for {
		out, err := b.ListBucket(bucket, nil, page)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range out.Contents {
			keys = append(keys, c.Key)
		}
		if !out.IsTruncated {
			return keys
		}
		page = gofakes3.ListBucketPage{Marker: out.NextMarker, HasMarker: true}
	}
}

// TestKeysCannotEscape: keys that look like paths, absolute or climbing, long or odd, all land
// under the bucket's objects/ directory, coexist, and survive a restart.
func TestKeysCannotEscape(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir)
	if err := b.CreateBucket("bkt"); err != nil {
		t.Fatal(err)
	}
	keys := []string{
		"a", "a/b", "a/b/", "a//b", "/abs/path", "/", "..", ".", "../escape", "../../../../etc/passwd",
		"a/../../b", `..\..\windows`, "ctrl\x01\x7f", "tab\tnew\nline", "ünïcødé/ключ/文件",
		strings.Repeat("x", 1024), strings.Repeat("../", 341), strings.Repeat("é", 512), "trailing space ",
	}
	for _, k := range keys {
		put(t, b, "bkt", k, "body of "+k)
	}
	check := func(b *Backend) {
		for _, k := range keys {
			if got := read(t, b, "bkt", k); got != "body of "+k {
				t.Errorf("%q: got %q", k, got)
			}
		}
		want := slices.Clone(keys)
		slices.Sort(want)
		if got := keysOf(t, b, "bkt"); !slices.Equal(got, want) {
			t.Errorf("listing %q, want %q", got, want)
		}
	}
	check(b)
	objects := filepath.Join(dir, "buckets", "bkt", "objects") + string(filepath.Separator)
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch {
		case strings.HasPrefix(p, objects):
		case p == filepath.Join(dir, "s3.lock"), p == filepath.Join(dir, "buckets", "bkt", "bucket.json"):
		default:
			t.Errorf("file outside objects/: %s", p)
		}
		return nil
	})
	b.Close()
	check(open(t, dir))

	for _, tc := range []struct {
		key  string
		code gofakes3.ErrorCode
	}{
		{"", gofakes3.ErrInvalidArgument},
		{strings.Repeat("k", 1025), gofakes3.ErrKeyTooLong},
		{"bad\xffutf8", gofakes3.ErrInvalidArgument},
	} {
		_, err := b.Put("bkt", tc.key, nil, strings.NewReader("x"), 1, nil)
		if !gofakes3.HasErrorCode(err, tc.code) {
			t.Errorf("key %.20q: %v, want %s", tc.key, err, tc.code)
		}
	}
}

func TestBuckets(t *testing.T) {
	b := open(t, t.TempDir())
	for _, name := range []string{"..", "a", "UPPER", "has_underscore", "../x", "ok..dots"} {
		if err := b.CreateBucket(name); !gofakes3.HasErrorCode(err, gofakes3.ErrInvalidBucketName) {
			t.Errorf("bucket %q: %v", name, err)
		}
	}
	for _, name := range []string{"zeta", "alpha"} {
		if err := b.CreateBucket(name); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.CreateBucket("alpha"); !gofakes3.HasErrorCode(err, gofakes3.ErrBucketAlreadyExists) {
		t.Errorf("second create: %v", err)
	}
	list, _ := b.ListBuckets()
	if len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "zeta" {
		t.Errorf("buckets %+v", list)
	}
	put(t, b, "alpha", "k", "v")
	if err := b.DeleteBucket("alpha"); !gofakes3.HasErrorCode(err, gofakes3.ErrBucketNotEmpty) {
		t.Errorf("delete non-empty: %v", err)
	}
	if _, err := b.CreateMultipartUpload("zeta", "pending", nil); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteBucket("zeta"); err != nil {
		t.Fatal(err)
	}
	if err := b.ForceDeleteBucket("alpha"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetObject("alpha", "k", nil); !gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchBucket) {
		t.Errorf("get from a deleted bucket: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(b.Root(), "uploads"))
	ents2, _ := os.ReadDir(filepath.Join(b.Root(), "buckets"))
	if len(ents)+len(ents2) != 0 {
		t.Errorf("left after deleting buckets: %d uploads, %d buckets", len(ents), len(ents2))
	}
}

// TestRestartRecovers: what a crash leaves (temp files, a body renamed in without its sidecar,
// a half-created upload) is removed at open; objects and multipart uploads carry on.
func TestRestartRecovers(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir)
	b.CreateBucket("bkt")
	info := put(t, b, "bkt", "kept", "kept body")
	id, err := b.CreateMultipartUpload("bkt", "resumed", map[string]string{"Content-Type": "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	etag, err := b.UploadPart("bkt", "resumed", id, 1, 6, strings.NewReader("part 1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil {
		t.Fatal("a second Open of the same directory succeeded")
	}
	b.Close()

	objDir, _, hash := b.objectPaths("bkt", "kept")
	leftovers := []string{
		filepath.Join(dir, "tmp", "put-123"),
		filepath.Join(objDir, hash+".deadbeefdeadbeef.data"),
		filepath.Join(dir, "uploads", "0123456789abcdef0123456789abcdef", "part-00001-x"),
		filepath.Join(dir, "uploads", "not-an-id", "upload.json"),
	}
	for _, p := range leftovers {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("junk"), 0o644)
	}
	b = open(t, dir)
	for _, p := range leftovers {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("not cleaned: %s", p)
		}
	}
	if got := read(t, b, "bkt", "kept"); got != "kept body" {
		t.Errorf("kept: %q", got)
	}
	st, err := b.Stat("bkt", "kept")
	if err != nil || st.ETag != info.ETag || !st.ModTime.Equal(info.ModTime) {
		t.Errorf("stat after restart: %+v %v", st, err)
	}
	out, err := b.Complete("bkt", "resumed", id, &gofakes3.CompleteMultipartUploadRequest{Parts: []gofakes3.CompletedPart{{PartNumber: 1, ETag: etag}}}, nil)
	if err != nil {
		t.Fatalf("complete after restart: %v", err)
	}
	if out.Meta["Content-Type"] != "text/plain" || read(t, b, "bkt", "resumed") != "part 1" {
		t.Errorf("resumed upload: %+v", out)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "uploads")); len(ents) != 0 {
		t.Errorf("uploads left: %d", len(ents))
	}
	if out.Seq <= info.Seq {
		t.Errorf("sequence went back after restart: %d then %d", info.Seq, out.Seq)
	}
}

// TestReadersSeeWholeObjects: while writers replace and delete a key, every read returns one
// complete version.
func TestReadersSeeWholeObjects(t *testing.T) {
	b := open(t, t.TempDir())
	b.CreateBucket("bkt")
	const size = 256 << 10
	versions := []string{strings.Repeat("a", size), strings.Repeat("b", size), strings.Repeat("c", size/2)}
	put(t, b, "bkt", "k", versions[0])
	stop := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	var reads, misses atomic.Int64
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				if w == 2 && i%5 == 0 {
					b.Delete("bkt", "k")
					continue
				}
				v := versions[(w+i)%len(versions)]
				if _, err := b.Put("bkt", "k", nil, strings.NewReader(v), int64(len(v)), nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				obj, err := b.GetObject("bkt", "k", nil)
				if gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchKey) {
					misses.Add(1)
					continue
				} else if err != nil {
					t.Error(err)
					return
				}
				data, err := io.ReadAll(obj.Contents)
				obj.Contents.Close()
				if err != nil {
					t.Error(err)
					return
				}
				if !slices.Contains(versions, string(data)) || int64(len(data)) != obj.Size {
					t.Errorf("read %d bytes (%q...) of a %d-byte object", len(data), data[:min(len(data), 8)], obj.Size)
					return
				}
				reads.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d whole reads, %d while deleted", reads.Load(), misses.Load())
	if reads.Load() == 0 {
		t.Error("no reads")
	}
	if ents, _ := os.ReadDir(filepath.Join(b.Root(), "tmp")); len(ents) != 0 {
		t.Errorf("%d files left in tmp", len(ents))
	}
	// One body on disk for the one object (or none if the last op was a delete).
	objDir, _, _ := b.objectPaths("bkt", "k")
	ents, _ := os.ReadDir(objDir)
	if len(ents) > 2 {
		t.Errorf("%d files for one key: replaced bodies leak", len(ents))
	}
}

func TestFailedWritesLeaveNothing(t *testing.T) {
	b := open(t, t.TempDir())
	b.CreateBucket("bkt")
	put(t, b, "bkt", "k", "original")
	for _, tc := range []struct {
		name string
		r    io.Reader
		size int64
		code gofakes3.ErrorCode
	}{
		{"short body", strings.NewReader("abc"), 10, gofakes3.ErrIncompleteBody},
		{"long body", strings.NewReader("abcdefghijkl"), 10, gofakes3.ErrIncompleteBody},
		{"reader error", io.MultiReader(strings.NewReader("abc"), errReader{gofakes3.ErrBadDigest}), 10, gofakes3.ErrBadDigest},
	} {
		_, err := b.Put("bkt", "k", nil, tc.r, tc.size, nil)
		if !gofakes3.HasErrorCode(err, tc.code) {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
		if got := read(t, b, "bkt", "k"); got != "original" {
			t.Errorf("%s: object now %q", tc.name, got)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(b.Root(), "tmp")); len(ents) != 0 {
		t.Errorf("%d files left in tmp", len(ents))
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestMetadataFiltered(t *testing.T) {
	b := open(t, t.TempDir())
	b.CreateBucket("bkt")
	meta := map[string]string{
		"Content-Type": "text/csv", "Content-Encoding": "aws-chunked, gzip", "X-Amz-Meta-Owner": "demo",
		"X-Amz-Date": "20260101T000000Z", "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD", "X-Amz-Tagging": "a=1",
		"X-Amz-Checksum-Crc32": "AAAAAA==", "Last-Modified": "whenever",
	}
	put := func(m map[string]string) error {
		_, err := b.Put("bkt", "k", m, bytes.NewReader(nil), 0, nil)
		return err
	}
	if err := put(meta); err != nil {
		t.Fatal(err)
	}
	info, _ := b.Stat("bkt", "k")
	want := map[string]string{"Content-Type": "text/csv", "Content-Encoding": "gzip", "X-Amz-Meta-Owner": "demo"}
	if len(info.Meta) != len(want) || info.Meta["Content-Encoding"] != "gzip" || info.Meta["X-Amz-Meta-Owner"] != "demo" {
		t.Errorf("stored %v, want %v", info.Meta, want)
	}
	if info.Tags["a"] != "1" || len(info.Tags) != 1 {
		t.Errorf("tags %v", info.Tags)
	}
	if err := put(map[string]string{"X-Amz-Meta-Big": strings.Repeat("v", 2048)}); !gofakes3.HasErrorCode(err, gofakes3.ErrMetadataTooLarge) {
		t.Errorf("2 KiB of metadata: %v", err)
	}
	if err := put(map[string]string{"X-Amz-Tagging": "a=1&a=2"}); !gofakes3.HasErrorCode(err, CodeInvalidTag) {
		t.Errorf("duplicate tag: %v", err)
	}
}
