package s3server

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func status(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// S3's conditional writes: If-None-Match: * (write only if the key is free) and If-Match: ETag
// (write only over that version) on PutObject, CompleteMultipartUpload and CopyObject (whose
// conditions concern the destination). A refused write is 412 and changes nothing; a refused
// completion leaves the upload in progress, as on S3.
func TestConditionalWrites(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	c := h.client
	bucket := aws.String(testBucket)
	complete := func(key string, cond func(*s3.CompleteMultipartUploadInput)) (string, error) {
		mp, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: bucket, Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		part, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: bucket, Key: aws.String(key), UploadId: mp.UploadId,
			PartNumber: aws.Int32(1), Body: strings.NewReader("from a multipart upload")})
		if err != nil {
			t.Fatal(err)
		}
		in := &s3.CompleteMultipartUploadInput{Bucket: bucket, Key: aws.String(key), UploadId: mp.UploadId,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: part.ETag, PartNumber: aws.Int32(1)}}}}
		cond(in)
		_, err = c.CompleteMultipartUpload(ctx, in)
		return aws.ToString(mp.UploadId), err
	}
	pending := func(key, id string) bool {
		_, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: bucket, Key: aws.String(key), UploadId: aws.String(id)})
		return err == nil
	}
	etag := aws.ToString(h.put("taken", "first").ETag)

	tests := []struct {
		name  string
		write func(key string) error
		key   string
		want  int    // 0: accepted
		after string // the key's content afterwards
	}{
		{"put if-none-match over a file", func(k string) error {
			_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String(k), Body: strings.NewReader("second"), IfNoneMatch: aws.String("*")})
			return err
		}, "taken", 412, "first"},
		{"complete if-none-match over a file", func(k string) error {
			id, err := complete(k, func(in *s3.CompleteMultipartUploadInput) { in.IfNoneMatch = aws.String("*") })
			if err != nil && !pending(k, id) {
				t.Errorf("the refused completion's upload is gone")
			}
			c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: bucket, Key: aws.String(k), UploadId: aws.String(id)})
			return err
		}, "taken", 412, "first"},
		{"complete if-none-match on a free key", func(k string) error {
			_, err := complete(k, func(in *s3.CompleteMultipartUploadInput) { in.IfNoneMatch = aws.String("*") })
			return err
		}, "free-complete", 0, "from a multipart upload"},
		{"complete if-match another version", func(k string) error {
			_, err := complete(k, func(in *s3.CompleteMultipartUploadInput) {
				in.IfMatch = aws.String(`"0123456789abcdef0123456789abcdef"`)
			})
			return err
		}, "taken", 412, "first"},
		{"complete if-match the version", func(k string) error {
			_, err := complete(k, func(in *s3.CompleteMultipartUploadInput) { in.IfMatch = aws.String(etag) })
			return err
		}, "matched", 0, "from a multipart upload"},
		{"copy if-none-match over a file", func(k string) error {
			_, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: bucket, Key: aws.String(k), CopySource: aws.String(testBucket + "/source"), IfNoneMatch: aws.String("*")})
			return err
		}, "taken", 412, "first"},
		{"copy if-none-match to a free key", func(k string) error {
			_, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: bucket, Key: aws.String(k), CopySource: aws.String(testBucket + "/source"), IfNoneMatch: aws.String("*")})
			return err
		}, "free-copy", 0, "source"},
	}
	h.put("source", "source")
	h.put("matched", "first")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.key == "matched" {
				etag = aws.ToString(h.put("matched", "first").ETag)
			}
			err := tt.write(tt.key)
			if got := status(err); got != tt.want || (tt.want == 0) != (err == nil) {
				t.Errorf("status %d (%v), want %d", got, err, tt.want)
			}
			if got := h.get(tt.key); got != tt.after {
				t.Errorf("%s = %q, want %q", tt.key, got, tt.after)
			}
		})
	}
}
