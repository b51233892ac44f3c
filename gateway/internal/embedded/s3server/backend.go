package s3server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/johannesboyne/gofakes3"

	"github.com/ferrygw/ferry/gateway/internal/embedded/s3disk"
)

// reqBackend is the gofakes3 backend for one request: it calls s3disk, reports changes through
// Config.OnChange before gofakes3 writes the response, and applies the request headers gofakes3
// ignores (conditional GET, copy directives and copy-source conditions).
type reqBackend struct {
	s    *Server
	disk *s3disk.Backend
	st   *reqState
}

var (
	_ gofakes3.Backend          = (*reqBackend)(nil)
	_ gofakes3.MultipartBackend = (*reqBackend)(nil)
)

// fail records the code of an S3 error so respWriter can send its real status.
func (b *reqBackend) fail(err error) error {
	if err == nil {
		return nil
	}
	var e gofakes3.Error
	if errors.As(err, &e) {
		b.st.errCode = e.ErrorCode()
		b.s.log.Debug("s3 request refused", "method", b.st.r.Method, "path", b.st.r.URL.Path, "request_id", b.st.id,
			"transfer_id", b.st.transferID, "err", err)
		return e // gofakes3 matches by type, not errors.As
	}
	b.s.log.Error("s3 request failed", "method", b.st.r.Method, "path", b.st.r.URL.Path, "request_id", b.st.id,
		"transfer_id", b.st.transferID, "err", err)
	return err
}

func (b *reqBackend) changed(reason string, info s3disk.ObjectInfo, deleted bool) error {
	c := Change{
		Bucket: info.Bucket, Key: info.Key, Size: info.Size, ETag: strings.Trim(info.ETag, `"`),
		Reason: reason, Deleted: deleted, Sequencer: fmt.Sprintf("%016X", info.Seq),
		RequestID: b.st.id, SourceIP: b.st.sourceIP, Requester: b.st.requester, Time: time.Now().UTC(),
	}
	if b.st.transferID != "" {
		// A gateway transfer's object: one line naming it, so its story reads on in this log.
		b.s.log.Info("object changed", "bucket", c.Bucket, "key", c.Key, "reason", reason, "size", c.Size,
			"request_id", c.RequestID, "transfer_id", b.st.transferID)
	}
	if b.s.cfg.OnChange == nil {
		return nil
	}
	// The change has happened whatever the client does now: record it even if it hung up.
	if err := b.s.cfg.OnChange(context.WithoutCancel(b.st.r.Context()), c); err != nil {
		b.s.log.Error("change hook failed", "bucket", c.Bucket, "key", c.Key, "reason", reason, "request_id", c.RequestID,
			"transfer_id", b.st.transferID, "err", err)
		return gofakes3.ErrInternal
	}
	return nil
}

func (b *reqBackend) ListBuckets() ([]gofakes3.BucketInfo, error) {
	out, err := b.disk.ListBuckets()
	return out, b.fail(err)
}

func (b *reqBackend) ListBucket(name string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	out, err := b.disk.ListBucket(name, prefix, page)
	return out, b.fail(err)
}

func (b *reqBackend) CreateBucket(name string) error { return b.fail(b.disk.CreateBucket(name)) }
func (b *reqBackend) DeleteBucket(name string) error { return b.fail(b.disk.DeleteBucket(name)) }
func (b *reqBackend) ForceDeleteBucket(name string) error {
	return b.fail(b.disk.ForceDeleteBucket(name))
}
func (b *reqBackend) BucketExists(name string) (bool, error) { return b.disk.BucketExists(name) }

func (b *reqBackend) GetObject(bucket, key string, rng *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	return b.open(bucket, key, rng, true)
}

// HeadObject serves HEAD, and gofakes3's look at a copy's source (where it must not set the
// response's ETag nor apply the request's If-* headers, which concern the destination).
func (b *reqBackend) HeadObject(bucket, key string) (*gofakes3.Object, error) {
	return b.open(bucket, key, nil, false)
}

func (b *reqBackend) open(bucket, key string, rng *gofakes3.ObjectRangeRequest, body bool) (*gofakes3.Object, error) {
	obj, info, err := b.disk.Open(bucket, key, rng, body)
	if err != nil {
		return nil, b.fail(err)
	}
	r := b.st.r
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return obj, nil
	}
	if err := checkRead(r.Header, info); err != nil {
		obj.Contents.Close()
		return nil, b.fail(err)
	}
	b.st.etag, b.st.tagCount = info.ETag, len(info.Tags)
	return obj, nil
}

// checkRead applies If-Match, If-Unmodified-Since and If-None-Match, which gofakes3 ignores or
// compares with an ETag that lacks the multipart suffix. (If-Modified-Since is gofakes3's.)
func checkRead(h http.Header, info s3disk.ObjectInfo) error {
	etag := strings.Trim(info.ETag, `"`)
	if v := h.Get("If-Match"); v != "" {
		if !etagListMatches(v, etag) {
			return gofakes3.ErrorMessage(gofakes3.ErrPreconditionFailed, "At least one of the pre-conditions you specified did not hold")
		}
	} else if v := h.Get("If-Unmodified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && info.ModTime.Truncate(time.Second).After(t) {
			return gofakes3.ErrorMessage(gofakes3.ErrPreconditionFailed, "At least one of the pre-conditions you specified did not hold")
		}
	}
	if v := h.Get("If-None-Match"); v != "" && etagListMatches(v, etag) {
		return gofakes3.ErrNotModified
	}
	return nil
}

func etagListMatches(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == "*" || strings.Trim(v, `"`) == etag {
			return true
		}
	}
	return false
}

// extraMeta adds the stored headers gofakes3 does not collect.
func (b *reqBackend) extraMeta(meta map[string]string) map[string]string {
	if meta == nil {
		meta = map[string]string{}
	}
	for _, h := range []string{"Cache-Control", "Content-Language", "Expires"} {
		if v := b.st.r.Header.Get(h); v != "" {
			meta[h] = v
		}
	}
	return meta
}

func (b *reqBackend) PutObject(bucket, key string, meta map[string]string, input io.Reader, size int64, cond *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	info, err := b.disk.Put(bucket, key, b.extraMeta(meta), input, size, cond)
	if err != nil {
		return gofakes3.PutObjectResult{}, b.fail(err)
	}
	return gofakes3.PutObjectResult{}, b.fail(b.changed("PutObject", info, false))
}

// CopyObject takes directives and replacement metadata from the request itself: gofakes3
// merges the source's metadata into the request's, which would keep old x-amz-meta-* under
// REPLACE and let request headers override the source's under COPY.
func (b *reqBackend) CopyObject(srcBucket, srcKey, dstBucket, dstKey string, _ map[string]string) (gofakes3.CopyObjectResult, error) {
	h := b.st.r.Header
	o := s3disk.CopyOptions{
		ReplaceMeta: strings.EqualFold(h.Get("X-Amz-Metadata-Directive"), "REPLACE"),
		ReplaceTags: strings.EqualFold(h.Get("X-Amz-Tagging-Directive"), "REPLACE"),
		Cond:        writeConditions(h),
	}
	if o.ReplaceMeta {
		o.Meta = map[string]string{}
		for k, vs := range h {
			o.Meta[k] = vs[0]
		}
		o.Meta = b.extraMeta(o.Meta)
	}
	if o.ReplaceTags {
		tags, err := s3disk.ParseTagging(h.Get("X-Amz-Tagging"))
		if err != nil {
			return gofakes3.CopyObjectResult{}, b.fail(err)
		}
		o.Tags = tags
	}
	src, err := b.disk.Stat(srcBucket, srcKey)
	if err != nil {
		return gofakes3.CopyObjectResult{}, b.fail(err)
	}
	if err := checkCopySource(h, src); err != nil {
		return gofakes3.CopyObjectResult{}, b.fail(err)
	}
	info, err := b.disk.Copy(srcBucket, srcKey, dstBucket, dstKey, o)
	if err != nil {
		return gofakes3.CopyObjectResult{}, b.fail(err)
	}
	if err := b.changed("CopyObject", info, false); err != nil {
		return gofakes3.CopyObjectResult{}, b.fail(err)
	}
	return gofakes3.CopyObjectResult{ETag: info.ETag, LastModified: gofakes3.NewContentTime(info.ModTime)}, nil
}

// writeConditions reads a write's own If-Match / If-None-Match (S3's conditional writes), which
// gofakes3 passes to PutObject only: CompleteMultipartUpload and CopyObject take them too (for a
// copy they concern the destination; x-amz-copy-source-if-* concern the source).
func writeConditions(h http.Header) *gofakes3.PutConditions {
	var c gofakes3.PutConditions
	if v := h.Get("If-Match"); v != "" {
		c.IfMatch = &v
	}
	if v := h.Get("If-None-Match"); v != "" {
		c.IfNoneMatch = &v
	}
	if c.IfMatch == nil && c.IfNoneMatch == nil {
		return nil
	}
	return &c
}

// checkCopySource applies the x-amz-copy-source-if-* headers.
func checkCopySource(h http.Header, src s3disk.ObjectInfo) error {
	etag := strings.Trim(src.ETag, `"`)
	failed := false
	if v := h.Get("X-Amz-Copy-Source-If-Match"); v != "" && !etagListMatches(v, etag) {
		failed = true
	}
	if v := h.Get("X-Amz-Copy-Source-If-None-Match"); v != "" && etagListMatches(v, etag) {
		failed = true
	}
	mod := src.ModTime.Truncate(time.Second)
	if t, err := http.ParseTime(h.Get("X-Amz-Copy-Source-If-Unmodified-Since")); err == nil && mod.After(t) {
		failed = true
	}
	if t, err := http.ParseTime(h.Get("X-Amz-Copy-Source-If-Modified-Since")); err == nil && !mod.After(t) {
		failed = true
	}
	if failed {
		return gofakes3.ErrorMessage(gofakes3.ErrPreconditionFailed, "At least one of the pre-conditions you specified did not hold")
	}
	return nil
}

func (b *reqBackend) DeleteObject(bucket, key string) (gofakes3.ObjectDeleteResult, error) {
	info, existed, err := b.disk.Delete(bucket, key)
	if err != nil {
		return gofakes3.ObjectDeleteResult{}, b.fail(err)
	}
	if existed {
		err = b.changed("DeleteObject", info, true)
	}
	return gofakes3.ObjectDeleteResult{}, b.fail(err)
}

func (b *reqBackend) DeleteMulti(bucket string, keys ...string) (gofakes3.MultiDeleteResult, error) {
	var res gofakes3.MultiDeleteResult
	for _, key := range keys {
		info, existed, err := b.disk.Delete(bucket, key)
		if err == nil && existed {
			err = b.changed("DeleteObject", info, true)
		}
		if err != nil {
			er := gofakes3.ErrorResultFromError(b.fail(err))
			er.Key = key
			res.Error = append(res.Error, er)
			continue
		}
		res.Deleted = append(res.Deleted, gofakes3.ObjectID{Key: key})
	}
	return res, nil
}

func (b *reqBackend) CreateMultipartUpload(bucket, key string, meta map[string]string) (gofakes3.UploadID, error) {
	id, err := b.disk.CreateMultipartUpload(bucket, key, b.extraMeta(meta))
	return id, b.fail(err)
}

func (b *reqBackend) UploadPart(bucket, key string, id gofakes3.UploadID, partNumber int, contentLength int64, input io.Reader) (string, error) {
	etag, err := b.disk.UploadPart(bucket, key, id, partNumber, contentLength, input)
	return etag, b.fail(err)
}

func (b *reqBackend) ListMultipartUploads(bucket string, marker *gofakes3.UploadListMarker, prefix gofakes3.Prefix, limit int64) (*gofakes3.ListMultipartUploadsResult, error) {
	out, err := b.disk.ListMultipartUploads(bucket, marker, prefix, limit)
	return out, b.fail(err)
}

func (b *reqBackend) ListParts(bucket, key string, id gofakes3.UploadID, marker int, limit int64) (*gofakes3.ListMultipartUploadPartsResult, error) {
	out, err := b.disk.ListParts(bucket, key, id, marker, limit)
	return out, b.fail(err)
}

func (b *reqBackend) AbortMultipartUpload(bucket, key string, id gofakes3.UploadID) error {
	return b.fail(b.disk.AbortMultipartUpload(bucket, key, id))
}

func (b *reqBackend) CompleteMultipartUpload(bucket, key string, id gofakes3.UploadID, input *gofakes3.CompleteMultipartUploadRequest) (gofakes3.VersionID, string, error) {
	info, err := b.disk.Complete(bucket, key, id, input, writeConditions(b.st.r.Header))
	if err != nil {
		return "", "", b.fail(err)
	}
	if err := b.changed("CompleteMultipartUpload", info, false); err != nil {
		return "", "", b.fail(err)
	}
	return "", info.ETag, nil
}
