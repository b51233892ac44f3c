package handler

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

// bigCSV is a valid CSV of at least n bytes whose rows start with tag, so two of them differ.
func bigCSV(n int, tag string) string {
	var b strings.Builder
	b.WriteString("id,payload\n")
	pad := strings.Repeat("x", 120)
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%s%d,%s\n", tag, i, pad)
	}
	return b.String()
}

// putMultipart uploads body in parts of partSize, as an S3-native client does, and returns the
// object's etag (unquoted).
func (e *env) putMultipart(key, body string, partSize int) string {
	e.t.Helper()
	c := ctx(e.t)
	mpu, err := e.s3.CreateMultipartUpload(c, &s3.CreateMultipartUploadInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if err != nil {
		e.t.Fatal(err)
	}
	var parts []s3types.CompletedPart
	for i, n := 0, int32(1); i < len(body); i, n = i+partSize, n+1 {
		chunk := body[i:min(i+partSize, len(body))]
		up, err := e.s3.UploadPart(c, &s3.UploadPartInput{Bucket: aws.String(e.bucket), Key: aws.String(key), UploadId: mpu.UploadId,
			PartNumber: aws.Int32(n), Body: strings.NewReader(chunk), ContentLength: aws.Int64(int64(len(chunk)))})
		if err != nil {
			e.t.Fatal(err)
		}
		parts = append(parts, s3types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(n)})
	}
	out, err := e.s3.CompleteMultipartUpload(c, &s3.CompleteMultipartUploadInput{Bucket: aws.String(e.bucket), Key: aws.String(key),
		UploadId: mpu.UploadId, MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.Trim(aws.ToString(out.ETag), `"`)
}

// awsCLI runs the real `aws` command against the test's versitygw.
func (e *env) awsCLI(args ...string) string {
	e.t.Helper()
	bin := testtool.Path(e.t, "aws")
	dir := e.t.TempDir()
	cfg := filepath.Join(dir, "config")
	if err := os.WriteFile(cfg, []byte("[default]\nregion = us-east-1\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx(e.t), bin, append([]string{"--endpoint-url", e.srv.Endpoint}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "AWS_ACCESS_KEY_ID="+e.srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+e.srv.Secret,
		"AWS_CONFIG_FILE="+cfg, "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "none"), "AWS_PAGER=")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("aws %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), stderr.String())
	}
	return out.String()
}

func (e *env) head(key string) (etag string, size int64) {
	e.t.Helper()
	h, err := e.s3.HeadObject(ctx(e.t), &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if err != nil {
		e.t.Fatalf("head %s: %v", key, err)
	}
	return strings.Trim(aws.ToString(h.ETag), `"`), aws.ToInt64(h.ContentLength)
}

// TestTransformMultipartCopyByContent: `aws s3 mv` of an S3-native upload over 8 MiB is a
// multipart copy (CreateMultipartUpload, UploadPartCopy, CompleteMultipartUpload) whose etag
// differs from the original's (other part size) and which has no transfer id: it is recognised
// by its bytes and does nothing. Bytes of the same size that differ are processed.
func TestTransformMultipartCopyByContent(t *testing.T) {
	e := newEnv(t)
	body := bigCSV(10<<20, "a")
	etag := e.putMultipart("incoming/alice/big.csv", body, 5<<20)
	e.handle(e.created("incoming/alice/big.csv", etag, len(body), event.ReasonCompleteMultipartUpload))
	if _, _, ok := e.get("processed/alice/big.jsonl"); !ok {
		t.Fatalf("the upload was not processed; keys %q", e.keys(""))
	}
	if sum := e.fileEvents()[0].Detail.Files[0].SHA256; sum != sha256Hex(body) {
		t.Errorf("event's sha256 %q, want %q", sum, sha256Hex(body))
	}

	e.awsCLI("s3", "mv", "s3://"+e.bucket+"/incoming/alice/big.csv", "s3://"+e.bucket+"/incoming/alice/moved.csv")
	movedTag, size := e.head("incoming/alice/moved.csv")
	if movedTag == etag || !strings.HasSuffix(movedTag, "-2") {
		t.Fatalf("the CLI's copy has etag %s (original %s): not the multipart copy this test is about", movedTag, etag)
	}
	moved := e.created("incoming/alice/moved.csv", movedTag, int(size), event.ReasonCompleteMultipartUpload)
	e.handle(moved)
	e.handle(moved)
	if _, _, ok := e.get("processed/alice/moved.jsonl"); ok {
		t.Error("the moved copy was processed again")
	}
	if n := len(e.fileEvents()); n != 1 {
		t.Errorf("%d pipeline events, want 1", n)
	}

	// A copy of the copy is recognised too (its bytes; the skipped copy recorded nothing).
	e.awsCLI("s3", "cp", "s3://"+e.bucket+"/incoming/alice/moved.csv", "s3://"+e.bucket+"/incoming/alice/again.csv")
	againTag, _ := e.head("incoming/alice/again.csv")
	e.handle(e.created("incoming/alice/again.csv", againTag, int(size), event.ReasonCompleteMultipartUpload))

	// Same size, other bytes, uploaded with the CLI: a new file, processed.
	other := bigCSV(10<<20, "b")
	if len(other) != len(body) || other == body {
		t.Fatal("test data: want another CSV of the same size")
	}
	local := filepath.Join(t.TempDir(), "other.csv")
	if err := os.WriteFile(local, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	e.awsCLI("s3", "cp", local, "s3://"+e.bucket+"/incoming/alice/other.csv")
	otherTag, _ := e.head("incoming/alice/other.csv")
	e.handle(e.created("incoming/alice/other.csv", otherTag, len(other), event.ReasonCompleteMultipartUpload))

	evs := e.fileEvents()
	if len(evs) != 2 || evs[1].Detail.Files[0].Key != "incoming/alice/other.csv" {
		t.Fatalf("events %+v", evs)
	}
	if got := e.keys("processed/alice/"); strings.Join(got, " ") != "processed/alice/big.jsonl processed/alice/other.jsonl" {
		t.Errorf("outputs %q", got)
	}
}
