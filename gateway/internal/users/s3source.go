package users

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// S3API is the part of the S3 API a users file on S3 needs; *s3.Client satisfies it.
type S3API interface {
	HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

var _ S3API = (*s3.Client)(nil)

// maxS3FileSize bounds what is read from an S3 users file: a few hundred bytes per user, so
// this is hundreds of thousands of users, and a wrong key naming a huge object cannot eat memory.
const maxS3FileSize = 64 << 20

// S3Object is a users file kept as an S3 object, so that every replica of a gateway reads the
// same users. Replicas notice a change by its ETag (Store.Watch polls it); edits are conditional
// writes (If-Match on the ETag read, If-None-Match: * to create), so two admins editing at once
// never lose an update: the second gets ErrConflict.
func S3Object(api S3API, bucket, key string) Source {
	return &s3Object{api: api, bucket: bucket, key: key}
}

type s3Object struct {
	api         S3API
	bucket, key string
}

func (o *s3Object) String() string { return "s3://" + o.bucket + "/" + o.key }

func (o *s3Object) read(ctx context.Context) (content, error) {
	out, err := o.api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(o.bucket), Key: aws.String(o.key)})
	if err != nil {
		return content{}, o.err("read", err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxS3FileSize+1))
	if err != nil {
		return content{}, o.err("read", err)
	}
	if len(data) > maxS3FileSize {
		return content{}, fmt.Errorf("users: %s: larger than %d MiB", o, maxS3FileSize>>20)
	}
	return content{data: data, version: aws.ToString(out.ETag), exists: true}, nil
}

// version returns the object's ETag without its content (what a poll asks).
func (o *s3Object) version(ctx context.Context) (string, error) {
	out, err := o.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(o.bucket), Key: aws.String(o.key)})
	if err != nil {
		return "", o.err("check", err)
	}
	return aws.ToString(out.ETag), nil
}

func (o *s3Object) write(ctx context.Context, data []byte, prev content) error {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(o.bucket),
		Key:           aws.String(o.key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/yaml; charset=utf-8"),
	}
	if prev.exists {
		in.IfMatch = aws.String(prev.version)
	} else {
		in.IfNoneMatch = aws.String("*")
	}
	_, err := o.api.PutObject(ctx, in)
	if err == nil {
		return nil
	}
	if isConflict(err) {
		return fmt.Errorf("%s: %w", o, ErrConflict)
	}
	return o.err("write", err)
}

// isConflict reports the answers S3 gives a conditional write that lost: 412 Precondition
// Failed (the ETag changed, or If-None-Match found an object), 409 ConditionalRequestConflict
// (a concurrent conditional write), and 404 for If-Match on an object deleted meanwhile.
func isConflict(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey":
			return true
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusPreconditionFailed, http.StatusConflict, http.StatusNotFound:
			return true
		}
	}
	return false
}

// err wraps an S3 error for op; a missing object matches fs.ErrNotExist.
func (o *s3Object) err(op string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("users: %s %s: %w (%w)", op, o, fs.ErrNotExist, err)
	}
	return fmt.Errorf("users: %s %s: %w", op, o, err)
}

func isNotFound(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		}
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound &&
		!(errors.As(err, &api) && api.ErrorCode() == "NoSuchBucket")
}
