package sftpd_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pkg/sftp"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

const partSize = s3store.DefaultPartSize

// s3env is the SFTP server over s3store on a real versitygw; alice's home is users/alice/.
type s3env struct {
	*env
	s3     *s3test.Server
	s3c    *s3.Client
	prefix string
}

func newS3Env(t *testing.T) *s3env {
	t.Helper()
	srv := s3test.Start(t)
	store, err := s3store.New(srv.Client(), s3store.Config{Bucket: srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "users/alice/"
	e := newEnv(t, func(o *envOpts) {
		o.Storage = func(u *users.User) (storage.FS, error) {
			return access.Restrict(store.Home("", "users/"+u.Name+"/"), u.Permissions), nil
		}
	})
	return &s3env{env: e, s3: srv, s3c: srv.Client(), prefix: prefix}
}

func (e *s3env) key(name string) string { return e.prefix + strings.TrimPrefix(name, "/") }

// object reads name back from S3 directly (not through the gateway).
func (e *s3env) object(t *testing.T, name string) ([]byte, map[string]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := e.s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(e.s3.Bucket), Key: aws.String(e.key(name))})
	if err != nil {
		return nil, nil, err
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(out.Body)
	return buf.Bytes(), out.Metadata, err
}

// keys lists every key in the bucket.
func (e *s3env) keys(t *testing.T) []string {
	t.Helper()
	var out []string
	p := s3.NewListObjectsV2Paginator(e.s3c, &s3.ListObjectsV2Input{Bucket: aws.String(e.s3.Bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			out = append(out, aws.ToString(o.Key))
		}
	}
	return out
}

// assertNothingLeft waits for the interrupted upload of name to be cleaned up: no object and
// no multipart upload left open in the bucket.
func (e *s3env) assertNothingLeft(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := e.s3c.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(e.s3.Bucket)})
		if err != nil {
			t.Fatalf("list multipart uploads: %v", err)
		}
		if len(out.Uploads) == 0 && e.mem.Pending() == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, u := range out.Uploads {
				t.Errorf("multipart upload left open: key %s id %s", aws.ToString(u.Key), aws.ToString(u.UploadId))
			}
			t.Fatalf("%d multipart uploads left open after an interrupted upload", len(out.Uploads))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if data, _, err := e.object(t, name); err == nil {
		t.Fatalf("%s exists in S3 with %d bytes after an interrupted upload", name, len(data))
	}
}

func TestS3EndToEndPkgSFTP(t *testing.T) {
	e := newS3Env(t)
	c := e.client(t, sftp.UseConcurrentWrites(true), sftp.UseConcurrentReads(true), sftp.MaxConcurrentRequestsPerFile(64))
	if err := c.Mkdir("/e2e"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, partSize - 1, partSize, partSize + 1, 100 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			name := fmt.Sprintf("/e2e/f%d", n)
			data := randomBytes(uint64(n)+1000, n)
			if err := upload(t, c, name, data); err != nil {
				t.Fatalf("upload: %v", err)
			}
			stored, meta, err := e.object(t, name)
			if err != nil || sha(stored) != sha(data) {
				t.Fatalf("S3 object: %d bytes (%v), want %d with the same SHA-256", len(stored), err, n)
			}
			if meta["ferry-user"] != "alice" || meta["ferry-protocol"] != "sftp" || meta["ferry-transfer-id"] == "" {
				t.Fatalf("object metadata %v", meta)
			}
			got, err := download(t, c, name)
			if err != nil || sha(got) != sha(data) {
				t.Fatalf("download: %d bytes (%v), want the same SHA-256", len(got), err)
			}
		})
	}
	// Escapes are clamped into alice's home; nothing appears outside users/alice/.
	if err := c.Mkdir("/bob"); err != nil {
		t.Fatal(err)
	}
	if err := upload(t, c, "../../bob/x", []byte("mine")); err != nil {
		t.Fatal(err)
	}
	for _, k := range e.keys(t) {
		if !strings.HasPrefix(k, e.prefix) {
			t.Errorf("key %q outside the home", k)
		}
	}
	if got, _, err := e.object(t, "/bob/x"); err != nil || string(got) != "mine" {
		t.Fatalf("clamped upload: %q %v", got, err)
	}
	// setstat lands on the object (and never fails the client).
	mt := time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := c.Chtimes("/bob/x", mt, mt); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Stat("/bob/x"); err != nil || !fi.ModTime().Equal(mt) {
		t.Fatalf("mtime after chtimes: %v %v", fi, err)
	}
	// Rename and remove reach S3.
	if err := c.PosixRename("/bob/x", "/bob/y"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove("/bob/y"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.object(t, "/bob/y"); err == nil {
		t.Fatal("removed object still in S3")
	}
}

func TestS3EndToEndOpenSSH(t *testing.T) {
	e := newS3Env(t)
	o := newOpenSSH(t, e.env, "alice")
	sizes := []int{0, 1, partSize - 1, partSize + 1, 100 << 20}
	var put, get strings.Builder
	put.WriteString("mkdir /ossh\n")
	for _, n := range sizes {
		o.writeLocal(t, fmt.Sprintf("f%d", n), randomBytes(uint64(n)+2000, n))
		fmt.Fprintf(&put, "put -p f%d /ossh/f%d\n", n, n)
		fmt.Fprintf(&get, "get /ossh/f%d back-f%d\n", n, n)
	}
	o.mustRun(t, put.String(), "-R", "64")
	o.mustRun(t, get.String(), "-R", "64")
	for _, n := range sizes {
		data := o.readLocal(t, fmt.Sprintf("f%d", n))
		stored, _, err := e.object(t, fmt.Sprintf("/ossh/f%d", n))
		if err != nil || sha(stored) != sha(data) {
			t.Errorf("%d: S3 object %d bytes (%v), want the same SHA-256", n, len(stored), err)
		}
		if got := o.readLocal(t, fmt.Sprintf("back-f%d", n)); sha(got) != sha(data) {
			t.Errorf("%d: downloaded copy differs", n)
		}
	}
}

func TestS3KilledClientLeavesNothing(t *testing.T) {
	e := newS3Env(t)
	c, nc := e.rawClient(t, sftp.UseConcurrentWrites(true))
	f, err := c.Create("/killed.bin")
	if err != nil {
		t.Fatal(err)
	}
	// Several parts go up before the cut, so a multipart upload is open at S3.
	if _, err := f.ReadFrom(&sizedReader{data: randomBytes(9, 3*partSize+5)}); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 20*time.Second, "a multipart upload to open", func() bool {
		out, err := e.s3c.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(e.s3.Bucket)})
		return err == nil && len(out.Uploads) > 0
	})
	nc.Close()
	e.assertNothingLeft(t, "/killed.bin")
	testtool.Eventually(t, 5*time.Second, "abort to be logged", func() bool {
		return strings.Contains(e.srv.Logs.String(), "upload aborted")
	})
}

func TestS3KilledOpenSSHLeavesNothing(t *testing.T) {
	e := newS3Env(t)
	o := newOpenSSH(t, e.env, "alice")
	o.writeLocal(t, "big.bin", randomBytes(10, 64<<20))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := o.cmd(ctx, "put big.bin /big.bin\n", "-l", "80000") // ~10 MB/s: killed mid-way
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 30*time.Second, "a multipart upload to open", func() bool {
		out, err := e.s3c.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(e.s3.Bucket)})
		return err == nil && len(out.Uploads) > 0
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	e.assertNothingLeft(t, "/big.bin")
}
