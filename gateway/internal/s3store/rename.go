package s3store

import (
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/vpath"
)

// Rename moves a file (copy, then delete; an existing file at to is replaced) or a directory
// (every key under it copied, then all deleted; refused with ErrTooLarge past MaxRenameKeys
// before anything moves, and copies already made are removed again if one copy fails).
// The parent of to must exist; to may not be an existing directory.
func (h *homeFS) Rename(ctx context.Context, from, to string) error {
	return h.rename(ctx, from, to, false)
}

// RenameNoReplace implements storage.NoReplaceRenamer: as Rename, but every copy is a
// conditional write that S3 refuses when its destination exists (If-None-Match: * on the
// CompleteMultipartUpload of a multipart copy, or on the PutObject of an empty file or a
// directory marker), so a file created at to since any check survives: fs.ErrExist, and
// nothing moved (copies already made are removed again). CopyObject has the same condition on
// AWS, but S3-compatible servers ignore it (versitygw v1.8.0 does): the multipart copy's
// completion is honoured by all, at the price of two more requests per file.
func (h *homeFS) RenameNoReplace(ctx context.Context, from, to string) error {
	return h.rename(ctx, from, to, true)
}

func (h *homeFS) rename(ctx context.Context, from, to string, noReplace bool) error {
	src, err := h.resolve("rename", from)
	if err != nil {
		return err
	}
	dst, err := h.resolve("rename", to)
	if err != nil {
		return err
	}
	if src.root() || dst.root() {
		return pathErr("rename", src.name, fs.ErrPermission)
	}
	e, head, err := h.lookup(ctx, src)
	if err != nil {
		return pathErr("rename", src.name, err)
	}
	if src.name == dst.name {
		return nil
	}
	if e.Dir && strings.HasPrefix(dst.name, src.name+"/") {
		return pathErr("rename", src.name, fmt.Errorf("%w: cannot move a directory into itself", storage.ErrInvalidPath))
	}
	p, err := h.parent("rename", dst)
	if err != nil {
		return err
	}
	if err := h.requireDir(ctx, p); err != nil {
		return pathErr("rename", dst.name, err)
	}
	existing, _, err := h.lookup(ctx, dst)
	switch {
	case err == nil && existing.Dir:
		return pathErr("rename", dst.name, fs.ErrExist)
	case err == nil && e.Dir:
		return pathErr("rename", dst.name, fs.ErrExist)
	case err == nil && noReplace:
		return pathErr("rename", dst.name, fs.ErrExist)
	case err != nil && !isNotFound(err):
		return pathErr("rename", dst.name, err)
	}
	if h.s.beforeCopy != nil {
		h.s.beforeCopy(dst.name)
	}
	if !e.Dir {
		return pathErr("rename", src.name, h.renameFile(ctx, src, dst, e.Size, head, noReplace))
	}
	return pathErr("rename", src.name, h.renameDir(ctx, src, dst, noReplace))
}

// renameFile copies the object, records its attributes (time and mode move with the file, as
// on a file system) for the copy's version, then deletes the source and its markers.
func (h *homeFS) renameFile(ctx context.Context, src, dst target, size int64, head *s3.HeadObjectOutput, noReplace bool) error {
	marks, err := h.marks(ctx, src.key)
	if err != nil {
		return err
	}
	if err := h.copyObject(ctx, src.key, dst.key, size, aws.ToString(head.ETag), noReplace); err != nil {
		return err
	}
	if m, ok := best(marks, versionOf(head.ETag, head.LastModified)); ok {
		if err := h.recordAttrs(ctx, dst.key, m.attrs()); err != nil {
			h.s.log.WarnContext(ctx, "carry attributes over a rename", "path", dst.name, "err", err)
		}
	}
	if _, err := h.s.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &h.bucket, Key: &src.key}); err != nil {
		return err
	}
	h.dropMarks(ctx, markKeys(marks))
	return nil
}

func (h *homeFS) renameDir(ctx context.Context, src, dst target, noReplace bool) error {
	all, err := h.listAll(ctx, src.dirKey, h.s.cfg.MaxRenameKeys)
	if err != nil {
		return err
	}
	// Attribute markers are not copied: they name the versions of the source objects, and the
	// copies are new versions. They are re-recorded for the copies below.
	var (
		objs      []types.Object
		staleKeys []string
		marks     = map[string][]attrMark{} // by the key of the file they describe
	)
	for _, o := range all {
		k := aws.ToString(o.Key)
		if fileKey, m, ok := splitMarkKey(k); ok {
			if m.key != "" {
				marks[fileKey] = append(marks[fileKey], m)
			}
			staleKeys = append(staleKeys, k)
			continue
		}
		objs = append(objs, o)
	}
	dstKeys := make([]string, len(objs))
	for i, o := range objs {
		dstKeys[i] = dst.dirKey + strings.TrimPrefix(aws.ToString(o.Key), src.dirKey)
		if len(dstKeys[i]) > vpath.MaxKeyLen {
			return fmt.Errorf("%w: %q would be longer than %d bytes", storage.ErrInvalidPath, dstKeys[i], vpath.MaxKeyLen)
		}
	}
	copied := make([]bool, len(objs))
	err = h.s.each(ctx, len(objs), func(ctx context.Context, i int) error {
		o := objs[i]
		if err := h.copyObject(ctx, aws.ToString(o.Key), dstKeys[i], aws.ToInt64(o.Size), aws.ToString(o.ETag), noReplace); err != nil {
			return err
		}
		copied[i] = true
		return nil
	})
	if err != nil {
		// Undo: the move happens whole or not at all.
		var undo []string
		for i, ok := range copied {
			if ok {
				undo = append(undo, dstKeys[i])
			}
		}
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if uerr := h.deleteKeys(cctx, undo); uerr != nil {
			h.s.log.WarnContext(ctx, "remove partial directory copy", "path", dst.name, "err", uerr)
		}
		return err
	}
	if len(marks) > 0 {
		h.carryMarks(ctx, objs, dstKeys, marks)
	}
	// Files (and the old markers) first, then directory markers deepest first, so a server that
	// prunes empty directories never sees a marker vanish under remaining keys.
	files := staleKeys
	var dirs []string
	for _, o := range objs {
		if k := aws.ToString(o.Key); strings.HasSuffix(k, "/") {
			dirs = append(dirs, k)
		} else {
			files = append(files, k)
		}
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Compare(b, a) })
	if err := h.deleteKeys(ctx, files); err != nil {
		return err
	}
	for _, k := range dirs { // one by one in order
		if _, err := h.s.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &h.bucket, Key: &k}); err != nil {
			return err
		}
	}
	return nil
}

// carryMarks records, for each copied file whose source carried attributes, the same
// attributes for its copy. A failure loses that file's time (logged): the move itself is done.
func (h *homeFS) carryMarks(ctx context.Context, objs []types.Object, dstKeys []string, marks map[string][]attrMark) {
	_ = h.s.each(ctx, len(objs), func(ctx context.Context, i int) error {
		o := objs[i]
		m, ok := best(marks[aws.ToString(o.Key)], versionOf(o.ETag, o.LastModified))
		if !ok {
			return nil
		}
		if err := h.recordAttrs(ctx, dstKeys[i], m.attrs()); err != nil {
			h.s.log.WarnContext(ctx, "carry attributes over a rename", "key", dstKeys[i], "err", err)
		}
		return nil
	})
}

// splitMarkKey reports whether key lies in a markers' directory and, when it is a marker,
// parses it (m.key is empty for other keys there) and names the file it describes.
func splitMarkKey(key string) (fileKey string, m attrMark, ok bool) {
	seg := "/" + attrDirName + "/"
	i := strings.LastIndex("/"+key, seg)
	if i < 0 {
		return "", m, false
	}
	dir, rel := key[:i], key[i+len(seg)-1:]
	name, m, parsed := parseMark(rel)
	if !parsed {
		return "", attrMark{}, true
	}
	m.key = key
	return dir + name, m, true
}

// copyObject copies one object with its metadata and tags: CopyObject up to 5 GiB, a
// multipart copy (UploadPartCopy ranges) above. The source is pinned to etag. With noReplace
// the write is conditional on dstKey not existing (see RenameNoReplace): a multipart copy
// whatever the size, or for an empty file a PutObject with the source's metadata and tags.
func (h *homeFS) copyObject(ctx context.Context, srcKey, dstKey string, size int64, etag string, noReplace bool) error {
	var ifNoneMatch *string
	if noReplace {
		ifNoneMatch = aws.String("*")
	}
	if strings.HasSuffix(srcKey, "/") && size == 0 {
		// A directory marker: write a new one (some servers refuse to copy directory objects).
		_, err := h.s.api.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &h.bucket, Key: &dstKey, Body: strings.NewReader(""), ContentLength: aws.Int64(0),
			IfNoneMatch: ifNoneMatch,
		})
		return err
	}
	source := copySource(h.bucket, srcKey)
	var ifMatch *string
	if etag != "" {
		ifMatch = &etag
	}
	if noReplace && size == 0 {
		return h.putEmptyCopy(ctx, srcKey, dstKey, ifMatch)
	}
	if size <= h.s.copyLimit && !noReplace {
		_, err := h.s.api.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket: &h.bucket, Key: &dstKey, CopySource: &source, CopySourceIfMatch: ifMatch,
			MetadataDirective: types.MetadataDirectiveCopy, TaggingDirective: types.TaggingDirectiveCopy,
		})
		return err
	}
	head, err := h.head(ctx, srcKey)
	if err != nil {
		return err
	}
	tagging, err := h.tagging(ctx, srcKey, head)
	if err != nil {
		return err
	}
	start := time.Now()
	mp, err := h.s.api.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &h.bucket, Key: &dstKey, Metadata: head.Metadata, ContentType: head.ContentType,
		Tagging: tagging,
	})
	// A retried create may have started other uploads, and a failed one (an attempt whose
	// answer was lost) one all the same: they are looked for once the copy is settled.
	if err != nil || retried(mp.ResultMetadata) {
		var own string
		if err == nil {
			own = aws.ToString(mp.UploadId)
		}
		defer func() {
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			h.abortStrays(cctx, dstKey, own, start, "op", "copy")
		}()
	}
	if err != nil {
		return err
	}
	partSize := max(h.s.copyPart, (size+maxParts-1)/maxParts)
	n := int((size + partSize - 1) / partSize)
	parts := make([]types.CompletedPart, n)
	err = h.s.each(ctx, n, func(ctx context.Context, i int) error {
		first := int64(i) * partSize
		last := min(first+partSize, size) - 1
		out, err := h.s.api.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket: &h.bucket, Key: &dstKey, UploadId: mp.UploadId, PartNumber: aws.Int32(int32(i + 1)),
			CopySource: &source, CopySourceIfMatch: ifMatch,
			CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", first, last)),
		})
		if err != nil {
			return err
		}
		parts[i] = types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(int32(i + 1))}
		return nil
	})
	if err == nil {
		_, err = h.s.api.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &h.bucket, Key: &dstKey, UploadId: mp.UploadId,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
			IfNoneMatch:     ifNoneMatch,
		})
	}
	if err != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if aerr := abortFully(cctx, h.s.api, h.bucket, dstKey, aws.ToString(mp.UploadId)); aerr != nil {
			h.s.log.WarnContext(ctx, "abort multipart copy", "key", dstKey, "err", aerr)
		}
	}
	return err
}

// putEmptyCopy copies an empty file without replacing anything: a multipart upload cannot copy
// zero bytes, so it writes an empty object with the source's metadata, content type and tags,
// on the condition that dstKey does not exist. The source must still be the version read.
func (h *homeFS) putEmptyCopy(ctx context.Context, srcKey, dstKey string, ifMatch *string) error {
	head, err := h.s.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &h.bucket, Key: &srcKey, IfMatch: ifMatch})
	if err != nil {
		return err
	}
	tagging, err := h.tagging(ctx, srcKey, head)
	if err != nil {
		return err
	}
	_, err = h.s.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &h.bucket, Key: &dstKey, Body: strings.NewReader(""), ContentLength: aws.Int64(0),
		Metadata: head.Metadata, ContentType: head.ContentType, Tagging: tagging, IfNoneMatch: aws.String("*"),
	})
	return err
}

// tagging is the source's tags as an x-amz-tagging value (nil when it has none).
func (h *homeFS) tagging(ctx context.Context, key string, head *s3.HeadObjectOutput) (*string, error) {
	if aws.ToInt32(head.TagCount) == 0 {
		return nil, nil
	}
	tags, err := h.tags(ctx, key)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	for k, v := range tags {
		q.Set(k, v)
	}
	return aws.String(q.Encode()), nil
}

// copySource is the x-amz-copy-source value: bucket/key, each segment URL-escaped.
func copySource(bucket, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		// Some servers read a "+" in the copy source as a space.
		segs[i] = strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	return bucket + "/" + strings.Join(segs, "/")
}
