package s3store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"mime"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

const (
	// partsPerStep parts are uploaded at each part size before it doubles, so even the
	// minimum part size reaches S3's 5 TiB object limit within its 10,000 parts.
	partsPerStep = 1000
	// cleanupTimeout bounds AbortMultipartUpload after the upload's context is gone.
	cleanupTimeout = 30 * time.Second
	firstBuffer    = 64 << 10
)

type uploadState int

const (
	stateOpen uploadState = iota
	stateCommitted
	stateFailed
	stateAborted
)

// Create starts a streaming upload of name. It makes no request: an upload of a small file
// costs exactly one PutObject. As in S3 (and AWS Transfer Family), parent directories are
// implied by the key and need not exist; a server that refuses a file over a directory
// (versitygw) fails the upload at Close. Nothing is visible until Close succeeds.
func (h *homeFS) Create(ctx context.Context, name string, opts storage.CreateOptions) (storage.Upload, error) {
	t, err := h.resolve("create", name)
	if err != nil {
		return nil, err
	}
	if t.root() {
		return nil, pathErr("create", t.name, storage.ErrIsDir)
	}
	if storage.TransferID(ctx) == "" {
		ctx = storage.WithTransferID(ctx, opts.TransferID) // its S3 requests carry it
	}
	u := &upload{
		h: h, name: t.name, key: t.key, opts: opts, parent: ctx, start: time.Now(),
		sum: sha256.New(), sem: make(chan struct{}, h.s.cfg.Concurrency),
	}
	u.ctx, u.cancel = context.WithCancelCause(ctx)
	h.s.uploads.Add(1) // until Close or Abort ends it (uploadEnded)
	// A cancelled request or connection aborts: a dropped client never commits a partial file.
	u.stopWatch = context.AfterFunc(ctx, func() { _ = u.Abort(context.Cause(ctx)) })
	return u, nil
}

// upload streams into S3: the first PartSize bytes are buffered; if Close comes first they go
// up with one PutObject, otherwise as a multipart upload with at most Concurrency parts in
// flight, from pooled buffers, so an upload holds at most (Concurrency+1)*PartSize bytes.
type upload struct {
	h         *homeFS
	name, key string
	opts      storage.CreateOptions
	start     time.Time       // when Create was called: the journal's start, the strays' cutoff
	parent    context.Context // Create's
	ctx       context.Context // parent's child, cancelled by Abort or a failed part
	cancel    context.CancelCauseFunc
	stopWatch func() bool

	writeMu  sync.Mutex // serialises Write, Close and Abort; guards the fields below
	state    uploadState
	result   error // what Close returns once the upload has ended
	buf      []byte
	parts    int32 // parts handed out
	uploadID string
	sum      hash.Hash
	size     int64
	etag     string          // from PutObject or CompleteMultipartUpload
	obj      *storage.Object // set when Close committed
	strays   bool            // CreateMultipartUpload was retried: it may have started others

	wg   sync.WaitGroup // parts in flight
	sem  chan struct{}
	mu   sync.Mutex // guards done, err, attrs
	done []types.CompletedPart
	err  error // first part failure
	attr storage.Attrs
}

var (
	_ storage.Upload       = (*upload)(nil)
	_ storage.AttrRecorder = (*upload)(nil)
	_ storage.Committer    = (*upload)(nil)
)

// Committed implements storage.Committer: the object a successful Close wrote.
func (u *upload) Committed() (storage.Object, bool) {
	u.writeMu.Lock()
	defer u.writeMu.Unlock()
	if u.obj == nil {
		return storage.Object{Bucket: u.h.bucket, Key: u.key}, false
	}
	return *u.obj, true
}

// partSize is the size of part number n (1-based): PartSize, doubled every partsPerStep parts.
func (u *upload) partSize(n int32) int64 {
	size := u.h.s.cfg.PartSize
	for step := (n - 1) / partsPerStep; step > 0 && size < maxPartSize; step-- {
		size *= 2
	}
	return min(size, maxPartSize)
}

func (u *upload) Write(p []byte) (int, error) {
	u.writeMu.Lock()
	defer u.writeMu.Unlock()
	if err := u.usable(); err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) {
		if len(u.buf) == cap(u.buf) {
			if err := u.grow(); err != nil {
				return n, err
			}
		}
		c := copy(u.buf[len(u.buf):cap(u.buf)], p[n:])
		u.buf = u.buf[:len(u.buf)+c]
		u.sum.Write(p[n : n+c])
		n += c
	}
	u.size += int64(n)
	return n, nil
}

// grow makes room in buf: the first part's buffer grows with the data (small files stay
// small); a full part is sent and a fresh buffer taken.
func (u *upload) grow() error {
	next := u.partSize(u.parts + 1)
	if u.parts == 0 && int64(cap(u.buf)) < next {
		size := int64(firstBuffer)
		if hint := u.opts.SizeHint; hint > 0 && cap(u.buf) == 0 {
			size = hint
		}
		size = min(max(size, 2*int64(cap(u.buf))), next)
		var b []byte
		if size == next {
			b = u.h.s.getBuf(size)
		} else {
			b = make([]byte, 0, size)
		}
		u.buf = append(b, u.buf...)
		return nil
	}
	if err := u.flush(); err != nil {
		return err
	}
	u.buf = u.h.s.getBuf(u.partSize(u.parts + 1))
	return nil
}

// flush hands buf to a part upload, starting the multipart upload first if needed and waiting
// while Concurrency parts are in flight.
func (u *upload) flush() error {
	if u.uploadID == "" {
		out, err := u.h.s.api.CreateMultipartUpload(u.ctx, &s3.CreateMultipartUploadInput{
			Bucket: &u.h.bucket, Key: &u.key, Metadata: u.identity(), ContentType: contentType(u.name),
		})
		if err != nil {
			return u.setErr(pathErr("write", u.name, err))
		}
		u.uploadID = aws.ToString(out.UploadId)
		u.strays = retried(out.ResultMetadata)
		if j := u.h.s.cfg.Journal; j != nil {
			j.Started(u.ctx, u.pending())
		}
	}
	select {
	case u.sem <- struct{}{}:
	case <-u.ctx.Done():
		return u.usable()
	}
	if err := u.failure(); err != nil {
		<-u.sem
		return err
	}
	u.parts++
	num, buf := u.parts, u.buf
	u.buf = nil
	u.wg.Add(1)
	go u.sendPart(num, buf)
	return nil
}

func (u *upload) sendPart(num int32, buf []byte) {
	defer u.wg.Done()
	defer func() { <-u.sem }()
	out, err := u.h.s.api.UploadPart(u.ctx, &s3.UploadPartInput{
		Bucket: &u.h.bucket, Key: &u.key, UploadId: &u.uploadID, PartNumber: aws.Int32(num),
		Body: bytes.NewReader(buf), ContentLength: aws.Int64(int64(len(buf))),
	})
	if err != nil {
		// The buffer is not reused: the HTTP transport may still be reading it.
		u.setErr(pathErr("write", u.name, fmt.Errorf("part %d: %w", num, err)))
		return
	}
	u.h.s.putBuf(buf)
	u.mu.Lock()
	u.done = append(u.done, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
	u.mu.Unlock()
}

// setErr records the first failure and cancels the parts still in flight.
func (u *upload) setErr(err error) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err == nil {
		u.err = err
		u.cancel(err)
	}
	return u.err
}

func (u *upload) failure() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// usable returns why the upload cannot take more data, or nil.
func (u *upload) usable() error {
	switch u.state {
	case stateCommitted:
		return &fs.PathError{Op: "write", Path: u.name, Err: fs.ErrClosed}
	case stateFailed, stateAborted:
		return u.result
	}
	if err := u.failure(); err != nil {
		return err
	}
	if err := context.Cause(u.ctx); err != nil {
		return pathErr("write", u.name, err)
	}
	return nil
}

// SetAttrs records attributes set on the open file; they are stored at commit.
func (u *upload) SetAttrs(a storage.Attrs) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if a.Mode != nil {
		u.attr.Mode = a.Mode
	}
	if a.ModTime != nil {
		u.attr.ModTime = a.ModTime
	}
}

// Close commits: one PutObject, or the last part and CompleteMultipartUpload followed by the
// tag only known at the end (the SHA-256), then the attribute marker when attributes were set
// on the open file. Any failure of the commit aborts and is returned.
func (u *upload) Close() error {
	u.writeMu.Lock()
	defer u.writeMu.Unlock()
	if u.state != stateOpen {
		return u.result
	}
	u.stopWatch()
	defer u.h.s.uploadEnded()
	if err := u.commit(); err != nil {
		u.state, u.result = stateFailed, err
		if aerr := u.cleanup(err); aerr != nil {
			u.h.s.log.WarnContext(u.parent, "abort failed upload", "path", u.name,
				"transfer_id", u.opts.TransferID, "err", aerr)
		}
		return err
	}
	u.state = stateCommitted
	u.obj = &storage.Object{Bucket: u.h.bucket, Key: u.key, Size: u.size,
		SHA256: hex.EncodeToString(u.sum.Sum(nil)), ETag: u.etag}
	return nil
}

func (u *upload) commit() error {
	if err := u.usable(); err != nil {
		return err
	}
	sum := hex.EncodeToString(u.sum.Sum(nil))
	if u.uploadID == "" {
		meta := u.identity()
		meta[attrSHA256] = sum
		out, err := u.h.s.api.PutObject(u.ctx, &s3.PutObjectInput{
			Bucket: &u.h.bucket, Key: &u.key, Body: bytes.NewReader(u.buf),
			ContentLength: aws.Int64(int64(len(u.buf))), Metadata: meta, ContentType: contentType(u.name),
			IfNoneMatch: u.ifNoneMatch(),
		})
		var etag string
		if err == nil {
			etag = aws.ToString(out.ETag)
		} else {
			var ok bool
			if etag, ok = u.landed(); !ok {
				return pathErr("close", u.name, err)
			}
		}
		u.etag = etag
		u.h.s.putBuf(u.buf)
		u.buf = nil
		u.recordAttrs()
		return nil
	}
	if len(u.buf) > 0 {
		if err := u.flush(); err != nil {
			return err
		}
	}
	u.wg.Wait()
	if err := u.usable(); err != nil {
		return err
	}
	parts := slices.SortedFunc(slices.Values(u.done), func(a, b types.CompletedPart) int {
		return cmp.Compare(aws.ToInt32(a.PartNumber), aws.ToInt32(b.PartNumber))
	})
	out, err := u.h.s.api.CompleteMultipartUpload(u.ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &u.h.bucket, Key: &u.key, UploadId: &u.uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     u.ifNoneMatch(),
	})
	var etag string
	if err == nil {
		etag = aws.ToString(out.ETag)
	} else {
		var ok bool
		if etag, ok = u.landed(); !ok {
			return pathErr("close", u.name, err)
		}
	}
	if j := u.h.s.cfg.Journal; j != nil {
		j.Ended(u.ctx, u.pending())
	}
	u.uploadID = "" // completed: nothing left to abort
	u.etag = etag
	u.cleanStrays()
	if _, err := u.h.s.api.PutObjectTagging(u.ctx, &s3.PutObjectTaggingInput{
		Bucket: &u.h.bucket, Key: &u.key, Tagging: &types.Tagging{TagSet: tagSet(map[string]string{attrSHA256: sum})},
	}); err != nil {
		// The object is complete and correct; SHA256() recomputes a missing sum.
		u.h.s.log.WarnContext(u.parent, "tag uploaded object", "path", u.name,
			"transfer_id", u.opts.TransferID, "bytes", u.size, "err", err)
	}
	u.recordAttrs()
	return nil
}

// ifNoneMatch is the commit's condition: with NoReplace, S3 refuses (412) to write over an
// object that exists when the commit runs, so a file created during the upload is kept and this
// upload fails (its multipart upload is then aborted like any failed commit's).
func (u *upload) ifNoneMatch() *string {
	if u.opts.NoReplace {
		return aws.String("*")
	}
	return nil
}

// recordAttrs writes the attributes set on the open file (fsetstat before close) once the
// object exists, before Close returns, so a stat or listing right after sees them. The upload
// itself succeeded: a failure here is logged, and every view then shows S3's LastModified.
func (u *upload) recordAttrs() {
	u.mu.Lock()
	attrs := u.attr
	u.mu.Unlock()
	if attrs.Mode == nil && attrs.ModTime == nil {
		return
	}
	if err := u.h.recordAttrs(u.ctx, u.key, attrs); err != nil {
		u.h.s.log.WarnContext(u.parent, "record attributes of uploaded file", "path", u.name,
			"transfer_id", u.opts.TransferID, "err", err)
	}
}

// Abort discards the upload. Abort after a successful Close does nothing.
func (u *upload) Abort(cause error) error {
	err := storage.ErrAborted
	if cause != nil && !errors.Is(cause, storage.ErrAborted) {
		err = fmt.Errorf("%w: %w", storage.ErrAborted, cause)
	}
	u.cancel(err) // stops parts in flight and a Write waiting for a slot
	u.writeMu.Lock()
	defer u.writeMu.Unlock()
	if u.state != stateOpen {
		return nil
	}
	u.stopWatch()
	defer u.h.s.uploadEnded()
	u.state, u.result = stateAborted, &fs.PathError{Op: "close", Path: u.name, Err: err}
	return pathErr("abort", u.name, u.cleanup(err))
}

// cleanup stops the parts in flight, releases buffers and aborts the multipart upload, with a
// context that outlives a cancelled request so no pending upload is left behind.
func (u *upload) cleanup(cause error) error {
	u.cancel(cause)
	u.wg.Wait()
	if u.buf != nil {
		u.h.s.putBuf(u.buf)
		u.buf = nil
	}
	if u.uploadID == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(u.parent), cleanupTimeout)
	defer cancel()
	if err := abortFully(ctx, u.h.s.api, u.h.bucket, u.key, u.uploadID); err != nil {
		return err // the journal keeps it: recovery aborts it once this process is gone
	}
	if j := u.h.s.cfg.Journal; j != nil {
		j.Ended(ctx, u.pending())
	}
	u.uploadID = ""
	u.cleanStrays()
	return nil
}

// cleanStrays aborts what a retried CreateMultipartUpload may have started (see abortStrays)
// once this upload is settled either way.
func (u *upload) cleanStrays() {
	if !u.strays {
		return
	}
	u.strays = false
	ctx, cancel := context.WithTimeout(context.WithoutCancel(u.parent), cleanupTimeout)
	defer cancel()
	u.abortStrays(ctx, u.start)
}

// pending describes the multipart upload for the journal.
func (u *upload) pending() PendingUpload {
	return PendingUpload{Bucket: u.h.bucket, Key: u.key, UploadID: u.uploadID, Opts: u.opts, Started: u.start}
}

// abortSettle is how long an aborted upload must stay gone before abortFully believes it.
const abortSettle = 50 * time.Millisecond

// AbortMultipart aborts a multipart upload for good (see abortFully): for recovery, which aborts
// uploads a crashed process left.
func AbortMultipart(ctx context.Context, api API, bucket, key, uploadID string) error {
	return abortFully(ctx, api, bucket, key, uploadID)
}

// abortFully aborts a multipart upload and makes sure it stays aborted. A part whose request
// was cancelled can still be finishing on the server and bring the upload back after the abort
// (AWS documents this: "call ListParts … and abort again"; versitygw does it on loopback), so
// the upload counts as gone only when ListParts says so twice, abortSettle apart.
func abortFully(ctx context.Context, api API, bucket, key, uploadID string) error {
	gone := 0
	for {
		if gone == 0 {
			_, err := api.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: &bucket, Key: &key, UploadId: &uploadID,
			})
			if err != nil && !isNotFound(err) {
				if ctx.Err() != nil {
					return err
				}
				// S3 failing even after the SDK's retries: keep at it until ctx ends, since
				// giving up leaves a pending upload that costs storage until a lifecycle rule.
				wait(ctx, time.Second)
				continue
			}
		}
		_, err := api.ListParts(ctx, &s3.ListPartsInput{Bucket: &bucket, Key: &key, UploadId: &uploadID})
		switch {
		case err == nil:
			gone = 0 // back again (or never went): abort once more
		case isNotFound(err):
			if gone++; gone == 2 {
				return nil
			}
		case ctx.Err() != nil:
			return err
		default:
			gone = 0 // not known to be gone: abort again after the pause
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(abortSettle):
		}
	}
}

// wait sleeps for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// identity is the metadata naming who wrote the object.
func (u *upload) identity() map[string]string {
	m := map[string]string{}
	for k, v := range map[string]string{
		attrUser: u.opts.User, attrProtocol: u.opts.Protocol,
		attrClient: u.opts.ClientAddr, attrTransferID: u.opts.TransferID,
	} {
		if v != "" {
			m[k] = encodeMeta(v)
		}
	}
	return m
}

func contentType(name string) *string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return &t
	}
	return nil
}

// getBuf returns an empty buffer of capacity size: a part-size one from the free list when
// there is one.
func (s *Store) getBuf(size int64) []byte {
	if size == s.cfg.PartSize {
		select {
		case b := <-s.freeBufs:
			return b[:0]
		default:
		}
	}
	return make([]byte, 0, size)
}

// putBuf keeps a part-size buffer for the next part. A free list (not a sync.Pool, which
// drops its buffers at every GC) so a running upload reuses its buffers instead of making
// 8 MiB of garbage per part, which under the soft memory limit meant frequent GCs and RSS
// spikes; it is emptied when the last upload ends, so an idle gateway holds none.
func (s *Store) putBuf(b []byte) {
	if int64(cap(b)) == s.cfg.PartSize {
		select {
		case s.freeBufs <- b[:0]:
		default: // full: let the GC have it
		}
	}
}

// uploadEnded is called once per upload after its last buffer came back.
func (s *Store) uploadEnded() {
	if s.uploads.Add(-1) > 0 {
		return
	}
	for {
		select {
		case <-s.freeBufs:
		default:
			return
		}
	}
}
