package s3disk

import (
	"io"

	"github.com/johannesboyne/gofakes3"
)

// The gofakes3.Backend object methods, over the richer methods above.

// GetObject implements gofakes3.Backend.
func (b *Backend) GetObject(bucketName, key string, rng *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	obj, _, err := b.Open(bucketName, key, rng, true)
	return obj, err
}

// HeadObject implements gofakes3.Backend.
func (b *Backend) HeadObject(bucketName, key string) (*gofakes3.Object, error) {
	obj, _, err := b.Open(bucketName, key, nil, false)
	return obj, err
}

// PutObject implements gofakes3.Backend.
func (b *Backend) PutObject(bucketName, key string, meta map[string]string, input io.Reader, size int64, cond *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	_, err := b.Put(bucketName, key, meta, input, size, cond)
	return gofakes3.PutObjectResult{}, err
}

// DeleteObject implements gofakes3.Backend; deleting a missing key succeeds, as in S3.
func (b *Backend) DeleteObject(bucketName, key string) (gofakes3.ObjectDeleteResult, error) {
	_, _, err := b.Delete(bucketName, key)
	return gofakes3.ObjectDeleteResult{}, err
}

// DeleteMulti implements gofakes3.Backend.
func (b *Backend) DeleteMulti(bucketName string, keys ...string) (gofakes3.MultiDeleteResult, error) {
	var res gofakes3.MultiDeleteResult
	for _, key := range keys {
		if _, _, err := b.Delete(bucketName, key); err != nil {
			er := gofakes3.ErrorResultFromError(err)
			er.Key = key
			res.Error = append(res.Error, er)
			continue
		}
		res.Deleted = append(res.Deleted, gofakes3.ObjectID{Key: key})
	}
	return res, nil
}

// CopyObject implements gofakes3.Backend. meta is gofakes3's: the request's headers merged
// over the source's metadata; the directives in it decide what the copy takes.
func (b *Backend) CopyObject(srcBucket, srcKey, dstBucket, dstKey string, meta map[string]string) (gofakes3.CopyObjectResult, error) {
	o, err := CopyOptionsFromMeta(meta)
	if err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	info, err := b.Copy(srcBucket, srcKey, dstBucket, dstKey, o)
	if err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	return gofakes3.CopyObjectResult{ETag: info.ETag, LastModified: gofakes3.NewContentTime(info.ModTime)}, nil
}

// CopyOptionsFromMeta reads x-amz-metadata-directive and x-amz-tagging-directive (and the
// replacement values) from request metadata as gofakes3 collects it.
func CopyOptionsFromMeta(meta map[string]string) (CopyOptions, error) {
	o := CopyOptions{
		ReplaceMeta: meta["X-Amz-Metadata-Directive"] == "REPLACE",
		Meta:        meta,
		ReplaceTags: meta["X-Amz-Tagging-Directive"] == "REPLACE",
	}
	if o.ReplaceTags {
		tags, err := tagsFromMeta(meta)
		if err != nil {
			return o, err
		}
		o.Tags = tags
	}
	return o, nil
}
