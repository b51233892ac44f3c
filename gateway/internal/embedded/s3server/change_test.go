package s3server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
)

func requestID(t *testing.T, md middleware.Metadata) string {
	t.Helper()
	id, ok := awsmiddleware.GetRequestIDMetadata(md)
	if !ok || id == "" {
		t.Fatal("no request ID in the response")
	}
	return id
}

func TestChangesForEveryWrite(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MinPartSize = 1 })
	ctx := t.Context()
	c := h.client
	b := aws.String(testBucket)
	type want struct {
		reason, key string
		size        int64
		etag        string
		reqID       string
	}
	var wants []want

	// Things that are not object writes change nothing.
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("other")}); err != nil {
		t.Fatal(err)
	}
	put, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String("a"), Body: strings.NewReader("alpha")})
	if err != nil {
		t.Fatal(err)
	}
	wants = append(wants, want{"PutObject", "a", 5, md5hex("alpha"), requestID(t, put.ResultMetadata)})
	put, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String("dir/"), Body: strings.NewReader("")})
	if err != nil {
		t.Fatal(err)
	}
	wants = append(wants, want{"PutObject", "dir/", 0, md5hex(""), requestID(t, put.ResultMetadata)})
	if _, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: b, Key: aws.String("a"),
		Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}}}); err != nil {
		t.Fatal(err)
	}
	cp, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("other"), Key: aws.String("copy of a"), CopySource: aws.String(testBucket + "/a")})
	if err != nil {
		t.Fatal(err)
	}
	wants = append(wants, want{"CopyObject", "copy of a", 5, md5hex("alpha"), requestID(t, cp.ResultMetadata)})
	mp, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: b, Key: aws.String("m")})
	if err != nil {
		t.Fatal(err)
	}
	var parts []types.CompletedPart
	for i, p := range []string{"part one ", "part two"} {
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: b, Key: aws.String("m"), UploadId: mp.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: strings.NewReader(p)})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	comp, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: b, Key: aws.String("m"), UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		t.Fatal(err)
	}
	wants = append(wants, want{"CompleteMultipartUpload", "m", 17, strings.Trim(multipartETag([]byte("part one "), []byte("part two")), `"`), requestID(t, comp.ResultMetadata)})
	del, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: b, Key: aws.String("a")})
	if err != nil {
		t.Fatal(err)
	}
	wants = append(wants, want{"DeleteObject", "a", 5, md5hex("alpha"), requestID(t, del.ResultMetadata)})
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: b, Key: aws.String("never existed")}); err != nil {
		t.Fatal(err)
	}
	dels, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: b, Delete: &types.Delete{
		Objects: []types.ObjectIdentifier{{Key: aws.String("dir/")}, {Key: aws.String("nope")}, {Key: aws.String("m")}}, Quiet: aws.Bool(true)}})
	if err != nil {
		t.Fatal(err)
	}
	id := requestID(t, dels.ResultMetadata)
	wants = append(wants, want{"DeleteObject", "dir/", 0, md5hex(""), id}, want{"DeleteObject", "m", 17, wants[3].etag, id})

	got := h.takeChanges()
	if len(got) != len(wants) {
		t.Fatalf("%d changes, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		c := got[i]
		if c.Reason != w.reason || c.Key != w.key || c.Size != w.size || c.ETag != w.etag || c.RequestID != w.reqID ||
			c.Deleted != (w.reason == "DeleteObject") {
			t.Errorf("change %d: %+v, want %+v", i, c, w)
		}
		if c.SourceIP != "127.0.0.1" || c.Requester != testKey || time.Since(c.Time) > time.Minute {
			t.Errorf("change %d: source %q requester %q time %v", i, c.SourceIP, c.Requester, c.Time)
		}
		if i > 0 && c.Sequencer <= got[i-1].Sequencer {
			t.Errorf("sequencer %s after %s", c.Sequencer, got[i-1].Sequencer)
		}
	}
	if got[2].Bucket != "other" || got[0].Bucket != testBucket {
		t.Errorf("buckets %q %q", got[2].Bucket, got[0].Bucket)
	}
}

func TestChangeHookRunsBeforeTheResponse(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan Change, 1)
	h := newHarness(t, func(c *Config) {
		c.OnChange = func(ctx context.Context, ch Change) error {
			entered <- ch
			<-release
			return nil
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := h.client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("k"), Body: strings.NewReader("body")})
		done <- err
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("hook not called")
	}
	// The object is committed when the hook runs; the client has no answer yet.
	if got := h.get("k"); got != "body" {
		t.Errorf("object during the hook: %q", got)
	}
	select {
	case err := <-done:
		t.Fatalf("PutObject returned (%v) while the hook was running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestChangeHookErrorFailsTheRequest(t *testing.T) {
	h := newHarness(t)
	h.hookErr = errors.New("event log full")
	_, err := h.client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("k"), Body: strings.NewReader("x")},
		func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	if httpStatus(err) != http.StatusInternalServerError {
		t.Errorf("PutObject with a failing hook: %v", err)
	}
}

func TestFailedUploadsChangeNothing(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	b := aws.String(testBucket)
	noRetry := func(o *s3.Options) { o.RetryMaxAttempts = 1 }

	md5Other := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16))
	_, err := h.client.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String("md5"), Body: strings.NewReader("data"), ContentMD5: aws.String(md5Other)}, noRetry)
	if errCode(err) != "BadDigest" {
		t.Errorf("wrong Content-MD5: %v", err)
	}
	_, err = h.client.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String("crc"), Body: strings.NewReader("data"), ChecksumCRC32: aws.String("AAAAAA==")}, noRetry)
	if errCode(err) != "BadDigest" {
		t.Errorf("wrong x-amz-checksum-crc32: %v", err)
	}
	_, err = h.client.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String(strings.Repeat("k", 1025)), Body: strings.NewReader("data")}, noRetry)
	if errCode(err) != "KeyTooLongError" {
		t.Errorf("key of 1025 bytes: %v", err)
	}

	// Clients that die mid-body: a PutObject and an UploadPart.
	mp, err := h.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: b, Key: aws.String("mp")})
	if err != nil {
		t.Fatal(err)
	}
	h.killedUpload(t, "/ferry/killed")
	h.killedUpload(t, "/ferry/mp?partNumber=1&uploadId="+aws.ToString(mp.UploadId))
	if _, err := h.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: b, Key: aws.String("mp"), UploadId: mp.UploadId}); err != nil {
		t.Fatal(err)
	}

	list, err := h.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: b})
	if err != nil || len(list.Contents) != 0 {
		t.Errorf("objects after failed uploads: %+v %v", list, err)
	}
	if n := len(h.takeChanges()); n != 0 {
		t.Errorf("%d changes from failed uploads", n)
	}
	if files := filesUnder(t, filepath.Join(h.dir, "buckets")); len(files) != 1 { // bucket.json
		t.Errorf("files left: %v", files)
	}
}

// killedUpload sends a signed PUT announcing 1 MiB, sends 64 KiB and hangs up, then waits for the
// server to clean up after it.
func (h *harness) killedUpload(t *testing.T, path string) {
	t.Helper()
	req := h.signedRequest(t, "PUT", path, nil, "UNSIGNED-PAYLOAD", http.Header{"Content-Length": {"1048576"}}, time.Now(), testSecret)
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 1048576\r\n", req.URL.RequestURI(), req.Host)
	for k, vs := range req.Header {
		if k != "Content-Length" {
			fmt.Fprintf(w, "%s: %s\r\n", k, vs[0])
		}
	}
	w.WriteString("\r\n")
	w.Write(make([]byte, 64<<10))
	w.Flush()
	// The server is writing the body to a temp file...
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, _ := os.ReadDir(filepath.Join(h.dir, "tmp"))
		if len(ents) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never started writing the body")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// ...when the client dies: the temp file must go.
	conn.Close()
	deadline = time.Now().Add(10 * time.Second)
	for {
		ents, _ := os.ReadDir(filepath.Join(h.dir, "tmp"))
		if len(ents) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tmp/ still holds %d files after a killed upload", len(ents))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
