package s3store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// TestReplicas checks two gateway replicas (two Stores, two clients) over one bucket see each
// other's writes at once: nothing is cached.
func TestReplicas(t *testing.T) {
	srv := s3test.Start(t)
	a := newStore(t, srv.Client(), Config{Bucket: srv.Bucket}).Home("", "shared")
	b := newStore(t, srv.Client(), Config{Bucket: srv.Bucket}).Home("", "shared")
	ctx := t.Context()
	for i, data := range [][]byte{[]byte("first"), randBytes(t, testPartSize+1), []byte("third")} {
		put(t, a, "/f", data)
		st, err := b.Stat(ctx, "/f")
		if err != nil || st.Size != int64(len(data)) || st.SHA256 != hexSum(data) {
			t.Fatalf("version %d: replica stat %+v, %v", i, st, err)
		}
		mustEqual(t, fmt.Sprintf("version %d on the replica", i), get(t, b, "/f"), data)
	}
	if err := a.Mkdir(ctx, "/d"); err != nil {
		t.Fatal(err)
	}
	if st, err := b.Stat(ctx, "/d"); err != nil || !st.Dir {
		t.Fatalf("replica stat of a new dir: %+v, %v", st, err)
	}
	if err := b.Remove(ctx, "/f"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Stat(ctx, "/f"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat after the replica removed it: %v", err)
	}
}

// TestListStreams checks List hands entries over page by page: stopping at the first entry
// costs one ListObjectsV2 call, and a full listing one call per page.
func TestListStreams(t *testing.T) {
	e := newEnv(t, Config{ListPageSize: 10})
	ctx := t.Context()
	for i := range 35 {
		if _, err := e.raw.PutObject(ctx, &s3.PutObjectInput{Bucket: &e.srv.Bucket,
			Key: aws.String(fmt.Sprintf("home/d/f%02d", i)), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	}
	e.spy.reset()
	stop := errors.New("enough")
	if err := e.fs.List(ctx, "/d", func(*storage.Entry) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("list: %v", err)
	}
	if n := e.spy.n("ListObjectsV2"); n != 1 {
		t.Errorf("stopping at the first entry made %d list calls, want 1", n)
	}
	e.spy.reset()
	count := 0
	if err := e.fs.List(ctx, "/d", func(*storage.Entry) error { count++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n := e.spy.n("ListObjectsV2"); count != 35 || n != 4 {
		t.Errorf("listed %d entries in %d calls, want 35 in 4", count, n)
	}
}

// TestForeignObjects checks objects written by other tools: no metadata, keys S3 allows but
// clients cannot name, a SHA-256 computed on demand and not written back (a HASH is a read: the
// user asking may not be allowed to modify the object).
func TestForeignObjects(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := t.Context()
	data := randBytes(t, 3000)
	for _, k := range []string{"home/plain", "home/weird//name", "home/sub/./x"} {
		if _, err := e.raw.PutObject(ctx, &s3.PutObjectInput{Bucket: &e.srv.Bucket, Key: aws.String(k),
			Body: strings.NewReader(string(data))}); err != nil {
			t.Logf("server refused key %q: %v", k, err) // posix-backed servers cannot store some
		}
	}
	st, err := e.fs.Stat(ctx, "/plain")
	if err != nil || st.SHA256 != "" || st.Mode != 0 {
		t.Fatalf("stat of a foreign object: %+v, %v", st, err)
	}
	e.spy.reset()
	h := e.fs.(storage.Hasher)
	sum, err := h.SHA256(ctx, "/plain")
	if err != nil || sum != hexSum(data) {
		t.Fatalf("SHA256 = %s, %v; want %s", sum, err, hexSum(data))
	}
	if e.spy.n("GetObject") != 1 || e.spy.n("PutObjectTagging") != 0 || e.spy.n("PutObject") != 0 {
		t.Errorf("computing the sum: %v", e.spy.calls)
	}
	var names []string
	if err := e.fs.List(ctx, "/", func(e *storage.Entry) error { names = append(names, e.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == "" || n == "." || n == ".." || strings.Contains(n, "/") {
			t.Errorf("listed unaddressable name %q", n)
		}
	}
}

// TestRenameMultipartCopy lowers the single-copy limit to exercise the UploadPartCopy path used
// above 5 GiB.
func TestRenameMultipartCopy(t *testing.T) {
	e := newEnv(t, Config{Concurrency: 2})
	e.store.copyLimit, e.store.copyPart = 6<<20, 5<<20
	data := randBytes(t, 13<<20)
	mode := fs.FileMode(0o640)
	put(t, e.fs, "/big+name %2f.bin", data)
	if err := e.fs.(storage.Setstater).SetStat(t.Context(), "/big+name %2f.bin", storage.Attrs{Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	e.spy.reset()
	if err := e.fs.Rename(t.Context(), "/big+name %2f.bin", "/moved"); err != nil {
		t.Fatal(err)
	}
	if n := e.spy.n("UploadPartCopy"); n != 3 {
		t.Errorf("%d UploadPartCopy calls, want 3", n)
	}
	if n := e.spy.n("CopyObject"); n != 0 {
		t.Errorf("%d CopyObject calls, want 0", n)
	}
	mustEqual(t, "moved", get(t, e.fs, "/moved"), data)
	st, err := e.fs.Stat(t.Context(), "/moved")
	if err != nil || st.SHA256 != hexSum(data) || st.Mode != mode {
		t.Errorf("stat after multipart copy: %+v, %v", st, err)
	}
	m, err := e.fs.(interface {
		Metadata(context.Context, string) (map[string]string, error)
	}).Metadata(t.Context(), "/moved")
	if err != nil || m["user"] != "demo" {
		t.Errorf("metadata after multipart copy: %v, %v", m, err)
	}
	e.noLeftovers(t, "home/big+name %2f.bin")
}

// TestRenameDirRollback checks a directory rename that fails half-way removes the copies it
// made: the move happens whole or not at all.
func TestRenameDirRollback(t *testing.T) {
	e := newEnv(t, Config{Concurrency: 1})
	ctx := t.Context()
	if err := e.fs.Mkdir(ctx, "/src"); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		put(t, e.fs, fmt.Sprintf("/src/f%d", i), []byte{byte(i)})
	}
	injected := errors.New("injected copy failure")
	e.spy.failCopy = func(n int) error {
		if n == 4 {
			return injected
		}
		return nil
	}
	if err := e.fs.Rename(ctx, "/src", "/dst"); !errors.Is(err, injected) {
		t.Fatalf("rename: %v, want the injected failure", err)
	}
	if _, err := e.fs.Stat(ctx, "/dst"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("destination after a failed rename: %v", err)
	}
	count := 0
	if err := e.fs.List(ctx, "/src", func(*storage.Entry) error { count++; return nil }); err != nil || count != 6 {
		t.Errorf("source after a failed rename: %d entries, %v", count, err)
	}
}

// TestHomes covers a bucket-root home, a home in another bucket and an invalid home.
func TestHomes(t *testing.T) {
	srv := s3test.Start(t)
	s := newStore(t, srv.Client(), Config{Bucket: srv.Bucket})
	ctx := t.Context()
	root := s.Home("", "")
	put(t, root, "/../x", []byte("root"))
	if _, err := srv.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: &srv.Bucket, Key: aws.String("x")}); err != nil {
		t.Errorf("bucket-root home wrote elsewhere: %v", err)
	}
	other := srv.NewBucket(t)
	oh := s.Home(other, "/users/demo/")
	if err := oh.Mkdir(ctx, "/d"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: &other, Key: aws.String("users/demo/d/")}); err != nil {
		t.Errorf("home in another bucket: %v", err)
	}
	bad := s.Home("", "../escape")
	if _, err := bad.Stat(ctx, "/"); !errors.Is(err, storage.ErrInvalidPath) {
		t.Errorf("invalid home: %v", err)
	}
	if _, err := bad.Create(ctx, "/x", storage.CreateOptions{}); !errors.Is(err, storage.ErrInvalidPath) {
		t.Errorf("invalid home create: %v", err)
	}
}

// TestNewClient builds a client the way the gateway does (standard credential chain from the
// environment) and uses it against the server.
func TestNewClient(t *testing.T) {
	srv := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.Secret)
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_PROFILE", "")
	c, err := NewClient(t.Context(), ClientConfig{Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t, c, Config{Bucket: srv.Bucket})
	put(t, s.Home("", "h"), "/f", []byte("via NewClient"))
	if got := get(t, s.Home("", "h"), "/f"); string(got) != "via NewClient" {
		t.Errorf("read %q", got)
	}
	if _, err := NewClient(t.Context(), ClientConfig{Endpoint: srv.Endpoint}); err == nil {
		t.Errorf("NewClient without a region succeeded")
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	c, err = NewClient(t.Context(), ClientConfig{Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = newStore(t, c, Config{Bucket: srv.Bucket}).Home("", "h").Stat(t.Context(), "/f")
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("stat with a wrong secret: %v, want fs.ErrPermission", err)
	}
}
