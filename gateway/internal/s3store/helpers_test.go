package s3store

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// env is a store over a spied client on a fresh versitygw, homed at "home/".
type env struct {
	srv   *s3test.Server
	raw   *s3.Client
	spy   *spy
	store *Store
	fs    storage.FS
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	srv := s3test.Start(t)
	e := &env{srv: srv, raw: srv.Client()}
	e.spy = newSpy(e.raw)
	cfg.Bucket = srv.Bucket
	e.store = newStore(t, e.spy, cfg)
	e.fs = e.store.Home("", "home")
	return e
}

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func put(t *testing.T, fsys storage.FS, name string, data []byte) {
	t.Helper()
	u, err := fsys.Create(t.Context(), name, storage.CreateOptions{User: "demo", Protocol: "sftp"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, fsys storage.FS, name string) []byte {
	t.Helper()
	r, err := fsys.Open(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes (sha256 %s), want %d bytes (sha256 %s)", what, len(got), hexSum(got), len(want), hexSum(want))
	}
}

// noLeftovers fails if key exists or any multipart upload is pending in the bucket.
func (e *env) noLeftovers(t *testing.T, key string) {
	t.Helper()
	if _, err := e.raw.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &e.srv.Bucket, Key: &key}); err == nil {
		t.Errorf("object %s exists", key)
	}
	out, err := e.raw.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &e.srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range out.Uploads {
		t.Errorf("multipart upload of %s (%s) still pending", aws.ToString(u.Key), aws.ToString(u.UploadId))
	}
}
