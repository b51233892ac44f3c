package s3store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
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
	"github.com/ferrygw/ferry/gateway/internal/transfermem"
	"github.com/ferrygw/ferry/pipeline/backoff"
)

// objectChecksum is the checksum S3 keeps for every object Ferry writes, whole-object even for
// multipart uploads (ChecksumType FULL_OBJECT, S3 combining the parts' CRCs). The SDK checks a
// GET's body against it; with no algorithm named, S3 and versitygw give a multipart object a
// CRC64NVME, which Go computes without hardware help (hash/crc64, slicing-by-8, its table
// rebuilt on every read): measured 0.8 CPU-seconds per GiB downloaded, a quarter of an SFTP
// download's CPU, where CRC32 (CLMUL) costs 0.05. The same CRC32 the SDK already sends with
// each part, so uploads pay nothing more.
const objectChecksum = types.ChecksumAlgorithmCrc32

const (
	// partsPerStep parts are uploaded at each part size before it doubles, so even the
	// minimum part size reaches S3's 5 TiB object limit within its 10,000 parts.
	partsPerStep = 1000
	// cleanupTimeout bounds the cleanup after a request (see cleanupContext).
	cleanupTimeout = 30 * time.Second
	blockSize      = transfermem.BlockSize
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
		mem: h.s.memory(opts.User),
	}
	u.ctx, u.cancel = context.WithCancelCause(ctx)
	// A cancelled request or connection aborts: a dropped client never commits a partial file.
	// writeMu is held while stopWatch is set: a ctx already cancelled runs the func at once, and
	// its Abort must find stopWatch set.
	u.writeMu.Lock()
	u.stopWatch = context.AfterFunc(ctx, func() { _ = u.Abort(context.Cause(ctx)) })
	u.writeMu.Unlock()
	return u, nil
}

// upload streams into S3: the first PartSize bytes are buffered; if Close comes first they go
// up with one PutObject, otherwise as a multipart upload with at most Concurrency parts in
// flight, so an upload holds at most (Concurrency+1)*PartSize bytes.
//
// Parts are made of pooled transfer memory blocks (package transfermem). The memory of a whole
// part is reserved before its first byte is taken (waiting, while the budget is spent, for
// parts in flight to finish: back-pressure on the client), so a part once started can always
// be completed: an upload never waits for memory while holding a partly filled part, and parts
// in flight give their memory back whatever any client does, which is what keeps waits finite
// (see sftpd's reorderWriter for the other half of that argument).
type upload struct {
	h         *homeFS
	name, key string
	opts      storage.CreateOptions
	start     time.Time       // when Create was called: the journal's start, the strays' cutoff
	parent    context.Context // Create's
	ctx       context.Context // parent's child, cancelled by Abort or a failed part
	cancel    context.CancelCauseFunc
	stopWatch func() bool

	mem *transfermem.Budget // the user's share of the transfer memory

	writeMu  sync.Mutex // serialises Write, Close and Abort; guards the fields below
	state    uploadState
	result   error              // what Close returns once the upload has ended
	lease    *transfermem.Lease // reserved part memory: the part being filled and parts in flight
	part     [][]byte           // blocks of the part being filled
	partLen  int64              // bytes in them
	partRes  int64              // bytes reserved for the part being filled (0: none yet)
	parts    int32              // parts handed out
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
		if err := u.room(); err != nil {
			u.size += int64(n)
			return n, err
		}
		blk := u.part[len(u.part)-1]
		i := int(u.partLen % blockSize)
		limit := min(u.partRes, u.partSize(u.parts+1)) - u.partLen // the part's and the reservation's end
		c := copy(blk[i:min(blockSize, i+int(limit))], p[n:])
		u.sum.Write(p[n : n+c])
		u.partLen += int64(c)
		n += c
	}
	u.size += int64(n)
	return n, nil
}

// room makes sure the part being filled has a block with free space: a full part is sent first,
// a new part's memory is reserved, a full block is followed by a new one.
func (u *upload) room() error {
	size := u.partSize(u.parts + 1)
	if u.partLen == size {
		if err := u.flush(); err != nil {
			return err
		}
		size = u.partSize(u.parts + 1)
	}
	if u.partLen == u.partRes {
		// A small file announced by the client (FTP ALLO) reserves only what it needs; past
		// that, or without a hint, the rest of the part.
		want := roundUp(size)
		if u.partRes == 0 && u.parts == 0 && u.opts.SizeHint > 0 && u.opts.SizeHint < size {
			want = roundUp(u.opts.SizeHint)
		}
		if u.lease == nil {
			l, err := u.mem.Reserve(u.ctx, want)
			if err != nil {
				return u.memErr(err)
			}
			u.lease = l
		} else if err := u.lease.Grow(u.ctx, want-u.partRes); err != nil {
			return u.memErr(err)
		}
		u.partRes = want
	}
	if u.partLen%blockSize == 0 && int64(len(u.part))*blockSize == u.partLen {
		u.part = append(u.part, u.lease.Block())
	}
	return nil
}

// memErr reports a reservation that failed: the upload cannot go on.
func (u *upload) memErr(err error) error {
	if errors.Is(err, transfermem.ErrExhausted) {
		err = fmt.Errorf("%w: %w", storage.ErrBusy, err)
	}
	return u.setErr(pathErr("write", u.name, err))
}

func roundUp(n int64) int64 { return (n + blockSize - 1) / blockSize * blockSize }

// flush hands the part being filled to a part upload, starting the multipart upload first if
// needed and waiting while Concurrency parts are in flight.
func (u *upload) flush() error {
	if u.uploadID == "" {
		out, err := u.h.s.api.CreateMultipartUpload(u.ctx, &s3.CreateMultipartUploadInput{
			Bucket: &u.h.bucket, Key: &u.key, Metadata: u.identity(), ContentType: contentType(u.name),
			ChecksumAlgorithm: objectChecksum, ChecksumType: types.ChecksumTypeFullObject,
		})
		if err != nil {
			// An attempt whose answer was lost (a reset, a timeout) may have started an upload
			// all the same; the cleanup looks for it.
			u.strays = true
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
	num, body, res := u.parts, &partBody{blocks: u.part, size: u.partLen}, u.partRes
	u.part, u.partLen, u.partRes = nil, 0, 0
	u.wg.Add(1)
	go u.sendPart(num, body, res)
	return nil
}

func (u *upload) sendPart(num int32, body *partBody, reserved int64) {
	defer u.wg.Done()
	defer func() { <-u.sem }()
	out, err := u.h.s.api.UploadPart(u.ctx, &s3.UploadPartInput{
		Bucket: &u.h.bucket, Key: &u.key, UploadId: &u.uploadID, PartNumber: aws.Int32(num),
		Body: body, ContentLength: aws.Int64(body.size), ChecksumAlgorithm: objectChecksum,
	})
	// On failure the blocks are not reused: the HTTP transport may still be reading them.
	u.giveBack(body.blocks, reserved, err == nil)
	if err != nil {
		u.setErr(pathErr("write", u.name, fmt.Errorf("part %d: %w", num, err)))
		return
	}
	u.mu.Lock()
	u.done = append(u.done, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num), ChecksumCRC32: out.ChecksumCRC32})
	u.mu.Unlock()
}

// giveBack returns a part's blocks (to the pool when reuse is safe) and its reservation.
func (u *upload) giveBack(blocks [][]byte, reserved int64, reuse bool) {
	for _, b := range blocks {
		if reuse {
			u.lease.Put(b)
		} else {
			u.lease.Drop(b)
		}
	}
	u.lease.Shrink(reserved)
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
			Bucket: &u.h.bucket, Key: &u.key, Body: &partBody{blocks: u.part, size: u.partLen},
			ContentLength: aws.Int64(u.partLen), Metadata: meta, ContentType: contentType(u.name),
			ChecksumAlgorithm: objectChecksum, IfNoneMatch: u.ifNoneMatch(),
		})
		etag, err := u.committed(err, func() *string { return out.ETag })
		if err != nil {
			return err
		}
		u.etag = etag
		u.releaseMemory(true)
		u.recordAttrs()
		return nil
	}
	if u.partLen > 0 {
		if err := u.flush(); err != nil {
			return err
		}
	}
	u.wg.Wait()
	if err := u.usable(); err != nil {
		return err
	}
	u.releaseMemory(true) // every part is sent
	parts := slices.SortedFunc(slices.Values(u.done), func(a, b types.CompletedPart) int {
		return cmp.Compare(aws.ToInt32(a.PartNumber), aws.ToInt32(b.PartNumber))
	})
	out, err := u.h.s.api.CompleteMultipartUpload(u.ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &u.h.bucket, Key: &u.key, UploadId: &u.uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}, ChecksumType: types.ChecksumTypeFullObject,
		IfNoneMatch: u.ifNoneMatch(),
	})
	etag, err := u.committed(err, func() *string { return out.ETag })
	if err != nil {
		return err
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
	if attrs.Empty() {
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
	u.state, u.result = stateAborted, &fs.PathError{Op: "close", Path: u.name, Err: err}
	return pathErr("abort", u.name, u.cleanup(err))
}

// cleanup stops the parts in flight, releases buffers and aborts the multipart upload, with a
// context that outlives a cancelled request so no pending upload is left behind.
func (u *upload) cleanup(cause error) error {
	u.cancel(cause)
	u.wg.Wait()
	// A failed PutObject may still be read by the transport: its blocks are dropped, not pooled.
	u.releaseMemory(false)
	if u.uploadID == "" {
		u.cleanStrays() // a failed CreateMultipartUpload may have started one
		return nil
	}
	ctx, cancel := cleanupContext(u.parent)
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
	ctx, cancel := cleanupContext(u.parent)
	defer cancel()
	u.h.abortStrays(ctx, u.key, u.uploadID, u.start, "path", u.name, "transfer_id", u.opts.TransferID)
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
				backoff.Sleep(ctx, time.Second)
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

// cleanupContext is for cleaning up after the work of ctx (aborting a multipart upload, undoing
// a partial copy): it outlives ctx's cancellation, since a client that went away must not leave
// anything behind, but not cleanupTimeout.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
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

// releaseMemory gives back the part being filled (its blocks pooled when reuse is true) and
// the lease, once no part is in flight.
func (u *upload) releaseMemory(reuse bool) {
	if u.lease == nil {
		return
	}
	u.giveBack(u.part, 0, reuse)
	u.part, u.partLen, u.partRes = nil, 0, 0
	u.lease.Release()
	u.lease = nil
}

// partBody is a part's bytes in its blocks, as a request body the SDK can rewind (for a retry,
// or to compute the checksum before sending).
type partBody struct {
	blocks [][]byte
	size   int64
	off    int64
}

var (
	_ io.ReadSeeker = (*partBody)(nil)
	_ io.WriterTo   = (*partBody)(nil)
)

func (b *partBody) Read(p []byte) (int, error) {
	if b.off >= b.size {
		return 0, io.EOF
	}
	n := copy(p, b.chunk())
	b.off += int64(n)
	return n, nil
}

// chunk is the rest of the block at off.
func (b *partBody) chunk() []byte {
	i := b.off % blockSize
	return b.blocks[b.off/blockSize][i:min(blockSize, i+b.size-b.off)]
}

// WriteTo hands the blocks to w as they are, without copying them through a buffer.
func (b *partBody) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for b.off < b.size {
		n, err := w.Write(b.chunk())
		b.off += int64(n)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (b *partBody) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += b.off
	case io.SeekEnd:
		offset += b.size
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	b.off = offset
	return offset, nil
}
