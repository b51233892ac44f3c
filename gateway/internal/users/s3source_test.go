package users

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/embedded/s3server"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// s3Target is a real S3-compatible server with a bucket for the users file.
type s3Target struct {
	client *s3.Client
	bucket string
}

// s3Servers runs fn against each S3-compatible server the gateway may keep its users file on:
// versitygw (an independent implementation) and the embedded default's endpoint.
func s3Servers(t *testing.T, fn func(t *testing.T, s s3Target)) {
	t.Run("versitygw", func(t *testing.T) {
		srv := s3test.Start(t)
		fn(t, s3Target{client: srv.Client(), bucket: srv.Bucket})
	})
	t.Run("embedded", func(t *testing.T) {
		fn(t, startEmbedded(t))
	})
}

func startEmbedded(t *testing.T) s3Target {
	t.Helper()
	srv, err := s3server.New(s3server.Config{DataDir: t.TempDir(), AccessKey: "ferry", Secret: "ferrysecret",
		Region: "us-east-1", Buckets: []string{"ferry"}}, nil)
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
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://" + l.Addr().String()),
		UsePathStyle: true, Credentials: credentials.NewStaticCredentialsProvider("ferry", "ferrysecret", "")})
	return s3Target{client: client, bucket: "ferry"}
}

func (s s3Target) put(t *testing.T, key, body string) {
	t.Helper()
	if _, err := s.client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key),
		Body: strings.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
}

func (s s3Target) etag(t *testing.T, key string) string {
	t.Helper()
	out, err := s.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.ETag)
}

func status(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// The edits' safety rests on the server refusing a PutObject whose condition no longer holds.
// Checked directly, so a server that ignored the headers (and would lose updates) fails here.
func TestS3ServersHonourConditionalPut(t *testing.T) {
	s3Servers(t, func(t *testing.T, s s3Target) {
		put := func(body string, mod func(*s3.PutObjectInput)) error {
			in := &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String("cond.yaml"), Body: strings.NewReader(body)}
			mod(in)
			_, err := s.client.PutObject(t.Context(), in)
			return err
		}
		if err := put("v1", func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }); err != nil {
			t.Fatalf("If-None-Match: * on a new key: %v", err)
		}
		v1 := s.etag(t, "cond.yaml")
		if err := put("v1bis", func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }); status(err) != http.StatusPreconditionFailed {
			t.Errorf("If-None-Match: * on an existing key = %v, want 412", err)
		}
		if err := put("v2", func(in *s3.PutObjectInput) { in.IfMatch = aws.String(v1) }); err != nil {
			t.Fatalf("If-Match with the current ETag: %v", err)
		}
		if err := put("v3", func(in *s3.PutObjectInput) { in.IfMatch = aws.String(v1) }); status(err) != http.StatusPreconditionFailed || !isConflict(err) {
			t.Errorf("If-Match with a stale ETag = %v, want 412", err)
		}
		got, err := S3Object(s.client, s.bucket, "cond.yaml").read(t.Context())
		if err != nil || string(got.data) != "v2" {
			t.Errorf("content %q (%v), want v2: a refused write changed the object", got.data, err)
		}
	})
}

var netipLoopback = netip.MustParseAddr("127.0.0.1")

func alice(t *testing.T) Entry {
	return Entry{Name: "alice", PasswordHash: testHash(t, "a", cost), Home: "alice/", Permissions: []string{"list"}}
}

func TestS3Edits(t *testing.T) {
	s3Servers(t, func(t *testing.T, s s3Target) {
		ctx := t.Context()
		src := S3Object(s.client, s.bucket, "config/users.yaml")
		if src.String() != "s3://"+s.bucket+"/config/users.yaml" {
			t.Errorf("String() = %q", src)
		}
		if _, _, err := Read(ctx, src); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Read of a missing object = %v, want fs.ErrNotExist", err)
		}
		// The first add creates the object (If-None-Match: *).
		if err := Add(ctx, src, alice(t)); err != nil {
			t.Fatal(err)
		}
		if err := Add(ctx, src, Entry{Name: "bob", PasswordHash: testHash(t, "b", cost), Home: "bob/", Permissions: []string{"*"}}); err != nil {
			t.Fatal(err)
		}
		if err := Add(ctx, src, alice(t)); !errors.Is(err, ErrUserExists) {
			t.Errorf("second add of alice = %v", err)
		}
		if err := SetPassword(ctx, src, "bob", testHash(t, "new", cost)); err != nil {
			t.Fatal(err)
		}
		if err := Delete(ctx, src, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := Delete(ctx, src, "nobody"); !errors.Is(err, ErrNoUser) {
			t.Errorf("delete of a missing user = %v", err)
		}
		list, _, err := Read(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		wantNames(t, list, "bob")
		if list[0].PasswordHash != testHash(t, "new", cost) {
			t.Error("password not set")
		}
	})
}

// hookAPI runs a hook once after the first GetObject: another admin's edit landing between
// this one's read and its write.
type hookAPI struct {
	S3API
	once  sync.Once
	after func()
}

func (h *hookAPI) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := h.S3API.GetObject(ctx, in, opts...)
	h.once.Do(h.after)
	return out, err
}

// Two admins edit at once: the second to write gets ErrConflict, nothing of its edit is
// written, the first's edit is kept, and running the second again applies it.
func TestS3ConcurrentEditConflicts(t *testing.T) {
	s3Servers(t, func(t *testing.T, s s3Target) {
		ctx := t.Context()
		const key = "users.yaml"
		other := S3Object(s.client, s.bucket, key)
		if err := Add(ctx, other, alice(t)); err != nil {
			t.Fatal(err)
		}
		carol := Entry{Name: "carol", PasswordHash: testHash(t, "c", cost), Home: "carol/", Permissions: []string{"list"}}
		dave := Entry{Name: "dave", PasswordHash: testHash(t, "d", cost), Home: "dave/", Permissions: []string{"list"}}
		slow := S3Object(&hookAPI{S3API: s.client, after: func() {
			if err := Add(ctx, other, carol); err != nil {
				t.Errorf("the other admin's edit: %v", err)
			}
		}}, s.bucket, key)
		err := Add(ctx, slow, dave)
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("edit over a concurrent one = %v, want ErrConflict", err)
		}
		if !strings.Contains(err.Error(), "s3://"+s.bucket+"/"+key) {
			t.Errorf("conflict error does not name the file: %v", err)
		}
		list, _, err := Read(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		wantNames(t, list, "alice", "carol")
		if err := Add(ctx, slow, dave); err != nil { // the hook ran once: a retry goes through
			t.Fatal(err)
		}
		list, _, _ = Read(ctx, other)
		wantNames(t, list, "alice", "carol", "dave")

		// Two admins creating the file at once: If-None-Match: * lets one win.
		first := S3Object(s.client, s.bucket, "new.yaml")
		second := S3Object(&hookAPI{S3API: s.client, after: func() {
			if err := Add(ctx, first, carol); err != nil {
				t.Errorf("first create: %v", err)
			}
		}}, s.bucket, "new.yaml")
		if err := Add(ctx, second, dave); !errors.Is(err, ErrConflict) {
			t.Errorf("racing create = %v, want ErrConflict", err)
		}
		list, _, _ = Read(ctx, first)
		wantNames(t, list, "carol")
	})
}

// Many admins adding users at once, each retrying on conflict: every user is in the file at the
// end. Without conditional writes, later writes would overwrite earlier ones and users would be
// lost.
func TestS3ConcurrentAddsLoseNothing(t *testing.T) {
	s3Servers(t, func(t *testing.T, s s3Target) {
		ctx := t.Context()
		src := S3Object(s.client, s.bucket, "busy.yaml")
		if err := Add(ctx, src, alice(t)); err != nil {
			t.Fatal(err)
		}
		const admins = 8
		var wg sync.WaitGroup
		conflicts := make(chan int, admins)
		for i := range admins {
			wg.Go(func() {
				e := Entry{Name: fmt.Sprintf("u%d", i), PasswordHash: testHash(t, "x", cost), Home: fmt.Sprintf("u%d/", i), Permissions: []string{"list"}}
				n := 0
				for attempt := 0; ; attempt++ {
					err := Add(ctx, src, e)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrConflict) || attempt == 50 {
						t.Errorf("admin %d: %v", i, err)
						break
					}
					n++
				}
				conflicts <- n
			})
		}
		wg.Wait()
		close(conflicts)
		total := 0
		for n := range conflicts {
			total += n
		}
		list, _, err := Read(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != admins+1 {
			t.Errorf("%d users after %d concurrent adds (+alice), %d conflicts retried: an update was lost", len(list), admins, total)
		}
		t.Logf("%d concurrent adds, %d conflicts retried", admins, total)
	})
}

func startS3Store(t *testing.T, s s3Target, key string, allowUnloaded bool) (*Store, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	st, err := OpenSource(t.Context(), S3Object(s.client, s.bucket, key), Options{
		Logger: slog.New(slog.NewTextHandler(logs, nil)), PollInterval: 50 * time.Millisecond, AllowUnloaded: allowUnloaded})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	})
	return st, logs
}

// Every replica follows the object: an admin's edit is picked up by its ETag; a bad edit is
// refused with s3://bucket/key:line and the previous users stay, logged once; the fix applies.
func TestS3StoreFollowsTheObject(t *testing.T) {
	s3Servers(t, func(t *testing.T, s s3Target) {
		const key = "ferry/users.yaml"
		s.put(t, key, userFile(t, "alice"))
		st, logs := startS3Store(t, s, key, false)
		if !has(st, "alice") || st.Loaded() != nil || st.Path() != "s3://"+s.bucket+"/"+key {
			t.Fatalf("alice not loaded from %s (%v)", st.Path(), st.Loaded())
		}
		if err := Add(t.Context(), S3Object(s.client, s.bucket, key), Entry{Name: "erin", PasswordHash: testHash(t, "e", cost),
			Home: "e/", Permissions: []string{"list"}}); err != nil {
			t.Fatal(err)
		}
		testtool.Eventually(t, 10*time.Second, "erin", func() bool { return has(st, "erin") && has(st, "alice") })

		aliceBefore, _ := st.Lookup("alice")
		s.put(t, key, "users:\n  - name: bob\n    home: b/\n    permissions: [list]\n    shell: /bin/sh\n")
		testtool.Eventually(t, 10*time.Second, "the refusal to be logged", func() bool { return strings.Contains(logs.String(), "users file refused") })
		want := "s3://" + s.bucket + "/" + key + `:5: users[0]: unknown key \"shell\"`
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not name s3 URL:line (%s): %s", want, logs.String())
		}
		time.Sleep(200 * time.Millisecond) // several polls of the same refused ETag
		if got, ok := st.Lookup("alice"); !ok || got != aliceBefore || has(st, "bob") || st.Loaded() != nil {
			t.Error("previous users not kept after a bad edit")
		}
		if n := strings.Count(logs.String(), "users file refused"); n != 1 {
			t.Errorf("refusal logged %d times, want once", n)
		}
		s.put(t, key, userFile(t, "bob"))
		testtool.Eventually(t, 10*time.Second, "bob after the fix", func() bool { return has(st, "bob") && !has(st, "alice") })
	})
}

// A replica may start before the users object exists (or while S3 is unreachable): with
// AllowUnloaded it refuses every login, says why, and loads the users once they appear.
func TestS3StoreStartsUnloaded(t *testing.T) {
	s3Servers(t, func(t *testing.T, s s3Target) {
		st, _ := startS3Store(t, s, "later.yaml", true)
		if err := st.Loaded(); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Loaded() = %v, want not-exist", err)
		}
		if _, err := st.CheckPassword(t.Context(), "alice", "a", netipLoopback); !errors.Is(err, ErrAuth) {
			t.Errorf("login with no users loaded = %v", err)
		}
		if err := Add(t.Context(), S3Object(s.client, s.bucket, "later.yaml"), alice(t)); err != nil {
			t.Fatal(err)
		}
		testtool.Eventually(t, 10*time.Second, "alice", func() bool { return has(st, "alice") && st.Loaded() == nil })
		if _, err := st.CheckPassword(t.Context(), "alice", "a", netipLoopback); err != nil {
			t.Errorf("alice's login: %v", err)
		}
		// Without AllowUnloaded a missing object is an error at start, as a missing file is.
		if _, err := OpenSource(t.Context(), S3Object(s.client, s.bucket, "missing.yaml"), Options{}); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("OpenSource of a missing object = %v", err)
		}
	})
}
