package s3test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestStart checks that the server answers real S3 calls, keeps user metadata (which needs
// xattrs or the sidecar), and that NewBucket gives distinct, usable buckets.
func TestStart(t *testing.T) {
	check(t, Start(t))
}

// TestSidecar runs the fallback used where the file system lacks user xattrs.
func TestSidecar(t *testing.T) {
	check(t, start(t, t.TempDir(), true))
}

func check(t *testing.T, srv *Server) {
	ctx := t.Context()
	c := srv.Client()
	other := srv.NewBucket(t)
	if other == srv.Bucket {
		t.Fatalf("NewBucket returned the default bucket %q", other)
	}
	for _, bucket := range []string{srv.Bucket, other} {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String("a/b.txt"),
			Body: strings.NewReader("hello " + bucket), Metadata: map[string]string{"ferry-user": "demo"},
		})
		if err != nil {
			t.Fatalf("put into %s: %v", bucket, err)
		}
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String("a/b.txt")})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(out.Body)
	_ = out.Body.Close()
	if string(body) != "hello "+srv.Bucket || out.Metadata["ferry-user"] != "demo" {
		t.Fatalf("got body %q metadata %v", body, out.Metadata)
	}
	if _, err := c.HeadBucket(context.Background(), &s3.HeadBucketInput{Bucket: aws.String(other)}); err != nil {
		t.Fatalf("head %s: %v", other, err)
	}
}

// Stop takes S3 away (requests fail) and Restart brings it back with its data.
func TestStopRestart(t *testing.T) {
	srv := Start(t)
	c := srv.Client()
	ctx := t.Context()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String("k"), Body: strings.NewReader("kept")}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(srv.Bucket)}); err == nil {
		t.Fatal("HeadBucket succeeded with versitygw stopped")
	}
	srv.Restart(t)
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(body) != "kept" {
		t.Errorf("after restart: %q", body)
	}
}
