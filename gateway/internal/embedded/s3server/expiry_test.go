package s3server

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Like the AWS lifecycle rule AbortIncompleteMultipartUpload: a multipart upload initiated more
// than AbortIncompleteUploadsAfter ago is aborted, its parts removed, while a younger one stays.
func TestIncompleteUploadsExpire(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AbortIncompleteUploadsAfter = 2 * time.Second })
	ctx := t.Context()
	create := func(key string) *string {
		mp, err := h.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String(key),
			UploadId: mp.UploadId, PartNumber: aws.Int32(1), Body: strings.NewReader("part")}); err != nil {
			t.Fatal(err)
		}
		return mp.UploadId
	}
	exists := func(key string, id *string) bool {
		_, err := h.client.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(testBucket), Key: aws.String(key), UploadId: id})
		return err == nil
	}
	old := create("old")
	time.Sleep(1500 * time.Millisecond)
	young := create("young")
	deadline := time.Now().Add(5 * time.Second)
	for exists("old", old) {
		if time.Now().After(deadline) {
			t.Fatal("an upload older than the limit is still there")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !exists("young", young) {
		t.Fatal("an upload younger than the limit was aborted")
	}
	// The upload is forgotten before its directory is removed: give the removal a moment.
	for files := filesUnder(t, filepath.Join(h.dir, "uploads")); len(files) != 2; files = filesUnder(t, filepath.Join(h.dir, "uploads")) {
		if time.Now().After(deadline) {
			t.Fatalf("files left under uploads/: %v, want young's upload.json and part", files)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
