package s3store

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/ferrygw/ferry/pipeline/backoff"
)

// A PutObject or CompleteMultipartUpload whose answer was lost (a reset, a timeout, a retry
// that found the upload already completed and got NoSuchUpload) may have written the object
// all the same. Reporting that upload as failed would leave an object the client believes it
// never sent, and the pipeline would process it; reporting it as committed is what happened.
// So after such a failure the store asks S3 which it was: the object is this upload's when it
// carries this upload's transfer id (written with its metadata) and its size. Without a
// transfer id nothing can be told apart, and the failure stands.

// resolveTries bounds the HeadObjects asked (each with the SDK's own retries) before the
// outcome is taken as "not written".
const resolveTries = 3

// committed settles a commit (PutObject or CompleteMultipartUpload) that returned err: its
// ETag (read by etag only when err is nil), or, when the answer was lost but the object at the
// key is this upload's (landed), that object's ETag; otherwise the commit's error.
func (u *upload) committed(err error, etag func() *string) (string, error) {
	if err == nil {
		return aws.ToString(etag()), nil
	}
	if tag, ok := u.landed(); ok {
		return tag, nil
	}
	return "", pathErr("close", u.name, err)
}

// landed reports whether the object at the upload's key is the one this upload wrote, and its
// ETag. It outlives the upload's context: a client that vanished while its file was being
// committed still gets a consistent answer in the log and the gateway's events.
func (u *upload) landed() (string, bool) {
	if u.opts.TransferID == "" {
		return "", false
	}
	ctx, cancel := cleanupContext(u.parent)
	defer cancel()
	for try := range resolveTries {
		out, err := u.h.s.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &u.h.bucket, Key: &u.key})
		switch {
		case err == nil:
			mine := decodeMeta(out.Metadata[attrTransferID]) == u.opts.TransferID && aws.ToInt64(out.ContentLength) == u.size
			if mine {
				u.h.s.log.InfoContext(u.parent, "commit answer lost, but the object is this upload's: committed",
					"path", u.name, "transfer_id", u.opts.TransferID, "bytes", u.size)
			}
			return aws.ToString(out.ETag), mine
		case isNotFound(err):
			return "", false
		}
		select {
		case <-ctx.Done():
			return "", false
		case <-time.After(time.Duration(try+1) * 200 * time.Millisecond):
		}
	}
	return "", false
}

// retried reports whether an SDK call's answer came after more than one attempt: an earlier
// attempt may have acted on the server without its answer arriving.
func retried(md middleware.Metadata) bool {
	res, ok := retry.GetAttemptResults(md)
	return ok && len(res.Results) > 1
}

// abortStrays aborts the multipart uploads of key that a retried or failed
// CreateMultipartUpload may have started without the caller learning their ids: every upload of
// exactly this key initiated since the caller began (since), other than its own (own, "" when
// it has none). (Two clients writing one key at the same moment is the only way to hit
// another's; that one then fails visibly, which beats a pending upload nobody will ever
// complete.) attrs identify the caller in the log.
func (h *homeFS) abortStrays(ctx context.Context, key, own string, since time.Time, attrs ...any) {
	var out *s3.ListMultipartUploadsOutput
	for {
		var err error
		out, err = h.s.api.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &h.bucket, Prefix: &key})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			// Left to the bucket's lifecycle rule for incomplete uploads.
			h.s.log.WarnContext(ctx, "list multipart uploads after a retried or failed create",
				append(attrs, "key", key, "err", err)...)
			return
		}
		backoff.Sleep(ctx, time.Second) // S3 failing even after the SDK's retries, as abortFully does
	}
	for _, mu := range out.Uploads {
		id := aws.ToString(mu.UploadId)
		if aws.ToString(mu.Key) != key || id == own || aws.ToTime(mu.Initiated).Before(since.Add(-5*time.Second)) {
			continue
		}
		if err := abortFully(ctx, h.s.api, h.bucket, key, id); err != nil {
			h.s.log.WarnContext(ctx, "abort a stray multipart upload", append(attrs, "key", key, "upload_id", id, "err", err)...)
			continue
		}
		h.s.log.InfoContext(ctx, "aborted a stray multipart upload left by a retried or failed create",
			append(attrs, "key", key, "upload_id", id)...)
	}
}
