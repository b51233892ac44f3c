package s3store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"maps"
	"mime"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// Names of the attributes the gateway records: user metadata (x-amz-meta-*) on objects written
// with one PutObject; for multipart uploads the writer's identity is metadata (known at the
// start) and ferry-sha256, ferry-mode and ferry-mtime are object tags (known only at the end,
// and metadata cannot change without rewriting the object). SetStat on a committed object
// writes tags too. Readers merge both, tags winning.
const (
	attrUser       = "ferry-user"
	attrProtocol   = "ferry-protocol"
	attrClient     = "ferry-client"
	attrTransferID = "ferry-transfer-id"
	attrSHA256     = "ferry-sha256"
	attrMode       = "ferry-mode"  // octal permission bits, e.g. "0644"
	attrMtime      = "ferry-mtime" // RFC 3339 with nanoseconds, UTC
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

// entry builds a file Entry from a HEAD and the attributes.
func (a objAttrs) entry(name string, out *s3.HeadObjectOutput) *storage.Entry {
	e := &storage.Entry{
		Name:    name,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
		SHA256:  a.get(attrSHA256),
	}
	if t, ok := parseMtime(a.get(attrMtime)); ok {
		e.ModTime = t
	}
	if m, err := strconv.ParseUint(a.get(attrMode), 8, 32); err == nil {
		e.Mode = fs.FileMode(m).Perm()
	}
	return e
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

// mergeTags adds set to the object's tags (other tags are kept).
func (h *homeFS) mergeTags(ctx context.Context, key string, set map[string]string) error {
	tags, err := h.tags(ctx, key)
	if err != nil {
		return err
	}
	maps.Copy(tags, set)
	_, err = h.s.api.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{
		Bucket: &h.bucket, Key: &key, Tagging: &types.Tagging{TagSet: tagSet(tags)},
	})
	return err
}

func tagSet(tags map[string]string) []types.Tag {
	set := make([]types.Tag, 0, len(tags))
	for k, v := range tags {
		set = append(set, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	return set
}

// attrValues renders settable attributes as metadata or tag values.
func attrValues(a storage.Attrs) map[string]string {
	m := map[string]string{}
	if a.Mode != nil {
		m[attrMode] = "0" + strconv.FormatUint(uint64(a.Mode.Perm()), 8)
	}
	if a.ModTime != nil {
		m[attrMtime] = a.ModTime.UTC().Format(time.RFC3339Nano)
	}
	return m
}

func parseMtime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil { // unix seconds, as other tools write
		return time.Unix(sec, 0).UTC(), true
	}
	return time.Time{}, false
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

// SetStat records mode and modification time as tags of a committed file, so no copy is made
// and no new Object Created event fires. Directories accept and ignore it.
func (h *homeFS) SetStat(ctx context.Context, name string, attrs storage.Attrs) error {
	t, err := h.resolve("setstat", name)
	if err != nil {
		return err
	}
	if err := h.requireFile(ctx, t); err != nil {
		if errors.Is(err, storage.ErrIsDir) {
			return nil
		}
		return pathErr("setstat", t.name, err)
	}
	set := attrValues(attrs)
	if len(set) == 0 {
		return nil
	}
	return pathErr("setstat", t.name, h.mergeTags(ctx, t.key, set))
}

// SHA256 returns the file's recorded SHA-256, or reads the object to compute it and records it
// as a tag for next time.
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
	hexSum := hex.EncodeToString(sum.Sum(nil))
	if err := h.mergeTags(ctx, t.key, map[string]string{attrSHA256: hexSum}); err != nil {
		h.s.log.WarnContext(ctx, "record computed sha256", "path", t.name, "err", err)
	}
	return hexSum, nil
}

// Metadata returns the attributes recorded with a file, merged from metadata and tags, named
// without the "ferry-" prefix ("user", "protocol", "client", "transfer-id", "sha256", "mode",
// "mtime").
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
