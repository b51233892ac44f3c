package s3store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/embedded/s3server"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// server is an S3-compatible server a test runs against.
type server struct {
	name   string
	client *s3.Client
	bucket string
}

// servers starts the two S3 servers conditional writes must work on: versitygw (an independent
// implementation) and the embedded endpoint.
func servers(t *testing.T) []server {
	t.Helper()
	v := s3test.Start(t)
	dir := t.TempDir()
	srv, err := s3server.New(s3server.Config{DataDir: dir, AccessKey: "k", Secret: "secret-key", Buckets: []string{"ferry"}},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	local := &s3test.Server{Endpoint: "http://" + l.Addr().String(), Region: "us-east-1", AccessKey: "k", Secret: "secret-key"}
	return []server{{"versitygw", v.Client(), v.Bucket}, {"embedded", local.Client(), "ferry"}}
}

func (s server) put(t *testing.T, key, body string) {
	t.Helper()
	if _, err := s.client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: strings.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
}

func (s server) get(t *testing.T, key string) (string, bool) {
	t.Helper()
	out, err := s.client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return "", false
	}
	defer out.Body.Close()
	b, _ := io.ReadAll(out.Body)
	return string(b), true
}

func (s server) pending(t *testing.T) []string {
	t.Helper()
	out, err := s.client.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &s.bucket})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys
}

// An upload with NoReplace (a user without overwrite) that another writer beats to its name
// fails at Close with fs.ErrExist: the other writer's object stays, and a multipart upload is
// aborted. Without a rival it commits as usual. Small (PutObject) and multipart uploads, on
// both servers.
func TestNoReplaceUploadLosesToAFileCreatedMeanwhile(t *testing.T) {
	for _, s := range servers(t) {
		store := newStore(t, s.client, Config{Bucket: s.bucket})
		home := store.Home("", "home")
		for _, size := range []int{10, 5<<20 + 10} {
			t.Run(s.name+"/"+map[bool]string{true: "multipart", false: "single"}[size > 5<<20], func(t *testing.T) {
				ctx := t.Context()
				name := "/race-" + t.Name()[len(s.name)+1:]
				mine := bytes.Repeat([]byte{'m'}, size)
				u, err := home.Create(ctx, name, storage.CreateOptions{User: "uploader", NoReplace: true})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := u.Write(mine); err != nil {
					t.Fatal(err)
				}
				s.put(t, "home"+name, "theirs")
				err = u.Close()
				if !errors.Is(err, fs.ErrExist) {
					t.Fatalf("Close = %v, want fs.ErrExist", err)
				}
				if got, _ := s.get(t, "home"+name); got != "theirs" {
					t.Errorf("the object holds %d bytes, want the rival's", len(got))
				}
				if p := s.pending(t); len(p) > 0 {
					t.Errorf("multipart uploads left pending: %v", p)
				}

				// Nothing in the way: it commits.
				put(t, home, name+".ok", nil)
				u, err = home.Create(ctx, name+".new", storage.CreateOptions{User: "uploader", NoReplace: true})
				if err != nil {
					t.Fatal(err)
				}
				u.Write(mine)
				if err := u.Close(); err != nil {
					t.Fatalf("NoReplace upload of a free name: %v", err)
				}
				if got, _ := s.get(t, "home"+name+".new"); got != string(mine) {
					t.Errorf("the free name holds %d bytes, want %d", len(got), size)
				}
			})
		}
	}
}

// RenameNoReplace never replaces a file that appears at the destination after the rename
// looked (beforeCopy plays the other client): fs.ErrExist, the destination keeps the other
// client's content, the source stays, nothing is left pending. Empty and non-empty files and a
// directory, on both servers; and with nothing in the way the move happens, metadata included.
func TestRenameNoReplaceKeepsARacingFile(t *testing.T) {
	for _, s := range servers(t) {
		store := newStore(t, s.client, Config{Bucket: s.bucket})
		home := store.Home("", "home")
		ctx := t.Context()
		for _, tt := range []struct {
			name, src string
			files     map[string]string // created under home before the rename
			racer     string            // key the racing client writes
		}{
			{"file", "/a.tmp", map[string]string{"/a.tmp": "mine"}, "home/a"},
			{"empty file", "/e.tmp", map[string]string{"/e.tmp": ""}, "home/e"},
			{"directory", "/d.tmp", map[string]string{"/d.tmp/1": "one", "/d.tmp/2": "two"}, "home/d/2"},
		} {
			t.Run(s.name+"/"+tt.name, func(t *testing.T) {
				for name, body := range tt.files {
					put(t, home, name, []byte(body))
				}
				dst := strings.TrimSuffix(tt.src, ".tmp")
				store.beforeCopy = func(string) { s.put(t, tt.racer, "theirs") }
				defer func() { store.beforeCopy = nil }()
				err := home.(storage.NoReplaceRenamer).RenameNoReplace(ctx, tt.src, dst)
				if !errors.Is(err, fs.ErrExist) {
					t.Fatalf("RenameNoReplace = %v, want fs.ErrExist", err)
				}
				if got, _ := s.get(t, tt.racer); got != "theirs" {
					t.Errorf("%s = %q, want the racing client's", tt.racer, got)
				}
				for name, body := range tt.files {
					if got, ok := s.get(t, "home"+name); !ok || got != body {
						t.Errorf("source %s = %q (%v), want %q", name, got, ok, body)
					}
				}
				if p := s.pending(t); len(p) > 0 {
					t.Errorf("multipart uploads left pending: %v", p)
				}
				if tt.name == "directory" {
					if _, ok := s.get(t, "home/d/1"); ok {
						t.Errorf("a partial copy of the directory was left")
					}
				}

				// Without a rival: moved, with its metadata.
				free := dst + ".free"
				if err := home.(storage.NoReplaceRenamer).RenameNoReplace(ctx, tt.src, free); err != nil {
					t.Fatalf("RenameNoReplace to a free name: %v", err)
				}
				for name, body := range tt.files {
					moved := free + strings.TrimPrefix(name, tt.src)
					if got, ok := s.get(t, "home"+moved); !ok || got != body {
						t.Errorf("%s = %q (%v), want %q", moved, got, ok, body)
					}
					if _, ok := s.get(t, "home"+name); ok {
						t.Errorf("source %s still there", name)
					}
					m, err := home.(interface {
						Metadata(context.Context, string) (map[string]string, error)
					}).Metadata(ctx, moved)
					if err != nil || m["user"] != "demo" {
						t.Errorf("metadata of %s after the move: %v, %v", moved, m, err)
					}
				}
			})
		}
	}
}

// A rename that must not replace copies through a multipart upload. When S3 starts that upload
// but its answer is lost, the rename fails, the source stays and no upload is left pending.
func TestRenameCopyCreateAnswerLost(t *testing.T) {
	e := newEnv(t, Config{Concurrency: 2})
	put(t, e.fs, "/a.tmp", []byte("mine"))
	e.spy.loseCreate = errors.New("injected: the answer was lost")
	defer func() { e.spy.loseCreate = nil }()
	if err := e.fs.(storage.NoReplaceRenamer).RenameNoReplace(t.Context(), "/a.tmp", "/a"); err == nil {
		t.Fatal("rename succeeded")
	}
	e.noLeftovers(t, "home/a")
	if got := get(t, e.fs, "/a.tmp"); string(got) != "mine" {
		t.Errorf("source = %q, want it kept", got)
	}
}
