package ftpd

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// s3env is the FTP server over the S3 store on a real versitygw; alice's home is users/alice/.
type s3env struct {
	*env
	s3     *s3test.Server
	client *s3.Client
	prefix string
}

func startS3Env(t *testing.T, cfg Config) *s3env {
	t.Helper()
	srv := s3test.Start(t)
	store, err := s3store.New(srv.Client(), s3store.Config{Bucket: srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "users/alice/"
	return &s3env{env: startEnvFS(t, cfg, store.Home("", prefix), nil), s3: srv, client: srv.Client(), prefix: prefix}
}

func (e *s3env) object(name string) ([]byte, map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := e.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(e.s3.Bucket), Key: aws.String(e.prefix + strings.TrimPrefix(name, "/"))})
	if err != nil {
		return nil, nil, err
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(out.Body)
	return buf.Bytes(), out.Metadata, err
}

// assertNoObject checks that name is absent and no multipart upload is left open in the bucket.
func (e *s3env) assertNoObject(name string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := e.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(e.s3.Bucket)})
		if err != nil {
			e.t.Fatalf("list multipart uploads: %v", err)
		}
		if len(out.Uploads) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, u := range out.Uploads {
				parts, err := e.client.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(e.s3.Bucket), Key: u.Key, UploadId: u.UploadId})
				var nums []int32
				if err == nil {
					for _, p := range parts.Parts {
						nums = append(nums, aws.ToInt32(p.PartNumber))
					}
				}
				e.t.Errorf("multipart upload left open: key %s id %s initiated %v parts %v (%v)", aws.ToString(u.Key), aws.ToString(u.UploadId), u.Initiated, nums, err)
			}
			e.t.Fatalf("%d multipart uploads left open after an interrupted upload", len(out.Uploads))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if data, _, err := e.object(name); err == nil {
		e.t.Fatalf("%s exists in S3 with %d bytes after an interrupted upload", name, len(data))
	}
}

func TestEndToEndS3(t *testing.T) {
	e := startS3Env(t, Config{})
	c := e.dial(true, testUser)
	if err := c.MakeDir("/e2e"); err != nil { // S3 homes, unlike memstore, need the parent to exist
		t.Fatal(err)
	}
	const part = s3store.DefaultPartSize
	for _, n := range []int{0, 1, part - 1, part, part + 1, 100 << 20} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			data := randomData(t, n)
			name := "/e2e/f" + strconv.Itoa(n)
			if err := c.Stor(name, bytes.NewReader(data)); err != nil {
				t.Fatalf("STOR: %v", err)
			}
			stored, meta, err := e.object(name)
			if err != nil || sha(stored) != sha(data) {
				t.Fatalf("S3 object: %d bytes (%v), want %d with the same SHA-256", len(stored), err, n)
			}
			if meta["ferry-user"] != testUser || meta["ferry-protocol"] != "ftps" || meta["ferry-transfer-id"] == "" {
				t.Fatalf("object metadata %v", meta)
			}
			r, err := c.Retr(name)
			if err != nil {
				t.Fatalf("RETR: %v", err)
			}
			if got := readAll(t, r); sha(got) != sha(data) {
				t.Fatalf("downloaded %d bytes with a different SHA-256", len(got))
			}
		})
	}
	// REST + RETR is a ranged read of the object.
	data, _, _ := e.object("/e2e/f" + strconv.Itoa(part+1))
	r, err := c.RetrFrom("/e2e/f"+strconv.Itoa(part+1), part-10)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r); !bytes.Equal(got, data[part-10:]) {
		t.Fatalf("REST+RETR returned %d bytes, want %d", len(got), len(data)-(part-10))
	}
	// HASH comes from the store.
	raw := dialRaw(t, e.addr)
	raw.authTLS()
	raw.login(testUser, testPass)
	one, _, _ := e.object("/e2e/f1")
	if msg := raw.expect(213, "HASH /e2e/f1"); !strings.Contains(msg, "SHA-256 0-1 "+sha(one)) {
		t.Fatalf("HASH reply %q, want the SHA-256 %s", msg, sha(one))
	}
	entries, err := c.List("/e2e")
	if err != nil || len(entries) != 6 {
		t.Fatalf("MLSD /e2e: %d entries, %v", len(entries), err)
	}
}

func TestEndToEndS3Aborts(t *testing.T) {
	e := startS3Env(t, Config{TLS: TLSConfig{Mode: TLSOptional}})

	t.Run("ABOR", func(t *testing.T) {
		r, _, _ := startUpload(t, e.env, true, "/abor.bin")
		r.send("ABOR")
		r.read()
		e.assertNoObject("/abor.bin")
	})

	t.Run("killed curl", func(t *testing.T) {
		curl := testtool.Path(t, "curl")
		for _, m := range []clientMode{{"plain-epsv", false, true}, {"ftps-pasv", true, false}} {
			name := "/killed-" + m.name + ".bin"
			cmd := exec.Command(curl, append(m.curlArgs(e.env), "-T", "-", e.url(name))...)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			before := e.store.written.Load()
			chunk := randomData(t, 1<<20)
			deadline := time.Now().Add(time.Minute)
			// Past two parts: the multipart upload exists and has parts when the client dies.
			for e.store.written.Load() < before+20<<20 {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatal("upload did not progress")
				}
				if _, err := stdin.Write(chunk); err != nil {
					t.Fatalf("feed curl: %v", err)
				}
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			stdin.Close()
			e.assertNoObject(name)
		}
	})
}
