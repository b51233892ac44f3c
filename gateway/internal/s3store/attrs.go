package s3store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/vpath"
)

// Names of the attributes the gateway records with an object: user metadata (x-amz-meta-*) on
// objects written with one PutObject; for multipart uploads the writer's identity is metadata
// (known at the start) and ferry-sha256 an object tag (known only at the end, and metadata
// cannot change without rewriting the object). Readers merge both, tags winning. Mode and
// modification time are not among them: listings cannot see metadata or tags, so those live in
// attribute markers (attrmarks.go), read by every view alike.
const (
	attrUser       = "ferry-user"
	attrProtocol   = "ferry-protocol"
	attrClient     = "ferry-client"
	attrTransferID = "ferry-transfer-id"
	attrSHA256     = "ferry-sha256"
)

// objAttrs is an object's metadata and (when fetched) tags.
type objAttrs struct {
	meta map[string]string
	tags map[string]string
}

func (a objAttrs) get(k string) string {
	if v, ok := a.tags[k]; ok {
		return v
	}
	return decodeMeta(a.meta[k])
}

// fileEntry builds a file's Entry from its HEAD, the tags when they may hold its SHA-256 and,
// withMarks, its attribute markers (both read concurrently).
func (h *homeFS) fileEntry(ctx context.Context, t target, out *s3.HeadObjectOutput, withMarks bool) (*storage.Entry, *s3.HeadObjectOutput, error) {
	type listed struct {
		marks []attrMark
		err   error
	}
	ch := make(chan listed, 1)
	if withMarks {
		go func() {
			marks, err := h.marks(ctx, t.key)
			ch <- listed{marks, err}
		}()
	}
	a := h.objectAttrs(ctx, t.key, out)
	e := &storage.Entry{
		Name:    t.base(),
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified).Truncate(time.Second),
		SHA256:  a.get(attrSHA256),
	}
	if withMarks {
		l := <-ch
		if l.err != nil {
			return nil, nil, l.err
		}
		if m, ok := best(l.marks, versionOf(out.ETag, out.LastModified)); ok {
			m.apply(e)
		}
	}
	return e, out, nil
}

var multipartETag = regexp.MustCompile(`-\d+"?$`)

// objectAttrs returns the metadata of a HEAD plus the tags when the object may hold ours:
// S3 says it has tags, or it is a multipart object whose SHA-256 is not in its metadata.
// Failing to read tags (a policy without s3:GetObjectTagging) is logged, not returned.
func (h *homeFS) objectAttrs(ctx context.Context, key string, out *s3.HeadObjectOutput) objAttrs {
	a := objAttrs{meta: out.Metadata}
	if aws.ToInt32(out.TagCount) == 0 &&
		(a.meta[attrSHA256] != "" || !multipartETag.MatchString(aws.ToString(out.ETag))) {
		return a
	}
	tags, err := h.tags(ctx, key)
	if err != nil {
		h.s.log.DebugContext(ctx, "read object tags", "key", key, "err", err)
		return a
	}
	a.tags = tags
	return a
}

func (h *homeFS) tags(ctx context.Context, key string) (map[string]string, error) {
	out, err := h.s.api.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &h.bucket, Key: &key})
	if err != nil {
		return nil, err
	}
	tags := make(map[string]string, len(out.TagSet))
	for _, t := range out.TagSet {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return tags, nil
}

func tagSet(tags map[string]string) []types.Tag {
	set := make([]types.Tag, 0, len(tags))
	for k, v := range tags {
		set = append(set, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	return set
}

// encodeMeta makes a value safe as an HTTP header: non-ASCII or control characters are
// RFC 2047 encoded, as S3 itself returns such values.
func encodeMeta(v string) string {
	for _, r := range v {
		if r < 0x20 || r > 0x7e {
			return mime.QEncoding.Encode("utf-8", v)
		}
	}
	return v
}

func decodeMeta(v string) string {
	if !strings.HasPrefix(v, "=?") {
		return v
	}
	if d, err := new(mime.WordDecoder).DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// SetStat records mode and modification time of a committed file in an attribute marker, so
// the object is not rewritten and every view (stat and listings, on every replica) shows them.
// Directories accept and ignore it.
func (h *homeFS) SetStat(ctx context.Context, name string, attrs storage.Attrs) error {
	t, err := h.resolve("setstat", name)
	if err != nil {
		return err
	}
	head, marks, err := h.fileAndMarks(ctx, t, !attrs.Empty())
	if err != nil {
		if errors.Is(err, storage.ErrIsDir) {
			return nil
		}
		return pathErr("setstat", t.name, err)
	}
	if attrs.Empty() {
		return nil
	}
	return pathErr("setstat", t.name, h.writeMark(ctx, t.key, versionOf(head.ETag, head.LastModified), attrs, marks))
}

// fileAndMarks looks up the file t names and, with withMarks, lists its attribute markers at
// once: a client that sets the time of every file it uploads (lftp's MFMT after each STOR)
// waited for both in turn. The markers are only used once the lookup found a file.
func (h *homeFS) fileAndMarks(ctx context.Context, t target, withMarks bool) (*s3.HeadObjectOutput, []attrMark, error) {
	if !withMarks {
		head, err := h.requireFile(ctx, t)
		return head, nil, err
	}
	type listed struct {
		marks []attrMark
		err   error
	}
	ch := make(chan listed, 1)
	go func() {
		m, err := h.marks(ctx, t.key)
		ch <- listed{m, err}
	}()
	head, err := h.requireFile(ctx, t)
	l := <-ch
	if err != nil {
		return nil, nil, err
	}
	return head, l.marks, l.err
}

// SetStatIfWriter implements storage.WriterSetstater: the writer is the object's ferry-user, read
// in the same HEAD whose version the attribute marker names, so a replacement by someone else
// in between gets no marker of ours.
func (h *homeFS) SetStatIfWriter(ctx context.Context, name string, attrs storage.Attrs, user string) error {
	t, err := h.resolve("setstat", name)
	if err != nil {
		return err
	}
	head, marks, err := h.fileAndMarks(ctx, t, !attrs.Empty())
	if err != nil {
		if errors.Is(err, storage.ErrIsDir) {
			return nil
		}
		return pathErr("setstat", t.name, err)
	}
	if user == "" || decodeMeta(head.Metadata[attrUser]) != user {
		return pathErr("setstat", t.name, fmt.Errorf("%w: %s was not uploaded by %s", fs.ErrPermission, t.name, user))
	}
	if attrs.Empty() {
		return nil
	}
	return pathErr("setstat", t.name, h.writeMark(ctx, t.key, versionOf(head.ETag, head.LastModified), attrs, marks))
}

// SHA256 returns the file's recorded SHA-256, or reads the object to compute it. It writes
// nothing: the caller may only be allowed to read (a computed sum cached as a tag was a write by
// a read-only user, and PutObjectTagging cannot be made conditional on the version hashed).
func (h *homeFS) SHA256(ctx context.Context, name string) (string, error) {
	t, err := h.resolve("sha256", name)
	if err != nil {
		return "", err
	}
	e, head, err := h.lookup(ctx, t)
	if err != nil {
		return "", pathErr("sha256", t.name, err)
	}
	if e.Dir {
		return "", pathErr("sha256", t.name, storage.ErrIsDir)
	}
	if e.SHA256 != "" {
		return e.SHA256, nil
	}
	out, err := h.s.api.GetObject(ctx, &s3.GetObjectInput{Bucket: &h.bucket, Key: &t.key, IfMatch: head.ETag})
	if err != nil {
		return "", pathErr("sha256", t.name, err)
	}
	defer out.Body.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, out.Body); err != nil {
		return "", pathErr("sha256", t.name, err)
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// Metadata returns the attributes recorded with a file, merged from metadata and tags, named
// without the "ferry-" prefix ("user", "protocol", "client", "transfer-id", "sha256").
func (h *homeFS) Metadata(ctx context.Context, name string) (map[string]string, error) {
	t, err := h.resolve("metadata", name)
	if err != nil {
		return nil, err
	}
	e, out, err := h.lookup(ctx, t)
	if err != nil {
		return nil, pathErr("metadata", t.name, err)
	}
	if e.Dir {
		return nil, pathErr("metadata", t.name, storage.ErrIsDir)
	}
	a := h.objectAttrs(ctx, t.key, out)
	m := map[string]string{}
	for _, src := range []map[string]string{a.meta, a.tags} {
		for k := range src {
			if name, ok := strings.CutPrefix(k, "ferry-"); ok {
				m[name] = a.get(k)
			}
		}
	}
	return m, nil
}

// Unbounded space, as an object store reports it: S3 has no capacity or object-count limit, so
// statvfs gets figures that mean "plenty" and that clients can compute with: 1 PiB, all free,
// and a billion entries (the figures rclone's SFTP server gives for S3). They fit in int64
// with room to spare, since clients multiply block counts by the block size and divide by the
// totals. A user quota, once there is one, belongs in a decorator that lowers them.
const (
	unboundedBytes   = 1 << 50
	unboundedEntries = 1_000_000_000
)

// Space implements storage.SpaceReporter. The figures are the same for every path; the path
// must exist, as statvfs(2) requires (the home costs no request).
func (h *homeFS) Space(ctx context.Context, name string) (storage.Space, error) {
	t, err := h.resolve("statvfs", name)
	if err != nil {
		return storage.Space{}, err
	}
	if _, _, err := h.lookup(ctx, t); err != nil {
		return storage.Space{}, pathErr("statvfs", t.name, err)
	}
	return storage.Space{Total: unboundedBytes, Free: unboundedBytes, Files: unboundedEntries,
		FreeFiles: unboundedEntries, MaxNameLen: vpath.MaxNameLen}, nil
}
