package handler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/s3status"
)

// Content identity: which inputs hold bytes already processed, so a copy of them (a rename, a
// multipart copy) does nothing. See seenContent.

// seenContent reports whether in is a copy of content already processed, and by what it was
// recognised. Only copy-like arrivals are checked — a CopyObject, a CompleteMultipartUpload
// (S3's event cannot tell a multipart copy, as `aws s3 mv` makes above 8 MiB, from a multipart
// upload) or any object carrying the gateway's transfer id (its renames keep it) — so a fresh
// PutObject of bytes seen before is processed as the new upload it is.
//
// The checks go from cheap to dear: the transfer id, or the etag and size (the same for a copy
// with the same part layout); then, only when some processed input had exactly this size, the
// SHA-256 of the object's bytes, read once here, against the digests the transform took while
// processing. A multipart copy whose parts differ (another part size) has another etag but the
// same bytes, and S3's own checksums cannot stand in: their algorithm and type follow the
// client that wrote each object (a CRC32 composite from the CLI's upload, a CRC64NVME full-object
// one on its copy), and the embedded endpoint keeps none.
func (h *Transform) seenContent(ctx context.Context, in input) (bool, string, error) {
	copyLike := in.Reason == event.ReasonCopyObject || in.Reason == event.ReasonCompleteMultipartUpload
	if !copyLike && in.TransferID == "" {
		return false, "", nil
	}
	how := "etag"
	if in.TransferID != "" {
		how = "transfer id"
	}
	if done, err := h.cfg.Ledger.Has(ctx, contentName(in)); err != nil || done {
		return done, how, err
	}
	if !copyLike {
		return false, "", nil
	}
	if done, err := h.cfg.Ledger.Has(ctx, sizeName(in.Bucket, in.Size)); err != nil || !done {
		return false, "", err
	}
	get, err := h.cfg.S3.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(in.Bucket), Key: aws.String(in.Key), IfMatch: aws.String(quote(in.ETag)),
	})
	switch {
	case s3status.Is(err, http.StatusNotFound), s3status.Is(err, http.StatusPreconditionFailed):
		return false, "", nil // gone or replaced: process() finds out and skips it
	case err != nil:
		return false, "", fmt.Errorf("transform: read s3://%s/%s for its digest: %w", in.Bucket, in.Key, err)
	}
	defer get.Body.Close()
	digest := sha256.New()
	if _, err := io.Copy(digest, get.Body); err != nil {
		return false, "", fmt.Errorf("transform: read s3://%s/%s for its digest: %w", in.Bucket, in.Key, err)
	}
	done, err := h.cfg.Ledger.Has(ctx, digestName(in.Bucket, in.Size, hex.EncodeToString(digest.Sum(nil))))
	return done, "sha256", err
}

// rememberContent records the identities of a handled input, so seenContent recognises later
// copies of it. A failure costs a reprocessing of a copy, never a lost file: logged, not returned.
func (h *Transform) rememberContent(ctx context.Context, log *slog.Logger, bucket string, f event.FileResult) {
	rec := map[string]string{"key": f.Key}
	names := []string{contentName(input{Bucket: bucket, Key: f.Key, ETag: f.ETag, Size: f.Size, TransferID: f.TransferID})}
	if f.SHA256 != "" {
		names = append(names, digestName(bucket, f.Size, f.SHA256), sizeName(bucket, f.Size))
	}
	for _, n := range names {
		if err := h.cfg.Ledger.Done(ctx, n, rec); err != nil {
			log.WarnContext(ctx, "transform: remember content", "key", f.Key, "err", err)
		}
	}
}

// digestName names content by its SHA-256 and size; sizeName says some content of that size
// was processed (the cheap test before reading an object to hash it).
func digestName(bucket string, size int64, sha string) string {
	return "content/" + hashOf(fmt.Sprintf("%s\x00sha256\x00%s\x00%d", bucket, sha, size))
}

func sizeName(bucket string, size int64) string {
	return "content-size/" + hashOf(fmt.Sprintf("%s\x00%d", bucket, size))
}

// contentName names the content of an input, to recognise a copy of processed content: the
// gateway's transfer id (CopyObject keeps metadata) when present, else size plus etag (the MD5
// of the bytes for single-part objects).
func contentName(in input) string {
	id := "etag\x00" + in.ETag + "\x00" + fmt.Sprint(in.Size)
	if in.TransferID != "" {
		id = "transfer\x00" + in.TransferID
	}
	return "content/" + hashOf(in.Bucket+"\x00"+id)
}
