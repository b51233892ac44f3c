package s3disk

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"unicode/utf8"

	"github.com/johannesboyne/gofakes3"
)

// Error codes S3 uses that gofakes3 has no constant (and no HTTP status) for; the server maps
// them to their status with Status.
const (
	CodeInvalidRequest gofakes3.ErrorCode = "InvalidRequest"
	CodeInvalidTag     gofakes3.ErrorCode = "InvalidTag"
	CodeEntityTooSmall gofakes3.ErrorCode = "EntityTooSmall"
)

// Status is the HTTP status of an S3 error code, including the codes gofakes3 does not know.
func Status(code gofakes3.ErrorCode) int {
	switch code {
	case CodeInvalidRequest, CodeInvalidTag, CodeEntityTooSmall:
		return 400
	}
	return code.Status()
}

func errCopyToItself() error {
	return gofakes3.ErrorMessage(CodeInvalidRequest, "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.")
}

// S3's tag limits.
const (
	maxTags        = 10
	maxTagKeyLen   = 128
	maxTagValueLen = 256
)

// ParseTagging parses the x-amz-tagging header form ("k1=v1&k2=v2") and checks S3's limits.
func ParseTagging(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	q, err := url.ParseQuery(s)
	if err != nil {
		return nil, gofakes3.ErrorMessage(CodeInvalidTag, "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates.")
	}
	tags := make(map[string]string, len(q))
	for k, vs := range q {
		if len(vs) != 1 {
			return nil, gofakes3.ErrorMessage(CodeInvalidTag, "Cannot provide multiple Tags with the same key")
		}
		tags[k] = vs[0]
	}
	return tags, ValidateTags(tags)
}

// ValidateTags checks S3's limits on a tag set.
func ValidateTags(tags map[string]string) error {
	if len(tags) > maxTags {
		return gofakes3.ErrorMessage(CodeInvalidTag, "Object tags cannot be greater than 10")
	}
	for k, v := range tags {
		if k == "" || utf8.RuneCountInString(k) > maxTagKeyLen || !utf8.ValidString(k) {
			return gofakes3.ErrorMessage(CodeInvalidTag, "The TagKey you have provided is invalid")
		}
		if utf8.RuneCountInString(v) > maxTagValueLen || !utf8.ValidString(v) {
			return gofakes3.ErrorMessage(CodeInvalidTag, "The TagValue you have provided is invalid")
		}
	}
	return nil
}

func tagsFromMeta(meta map[string]string) (map[string]string, error) {
	return ParseTagging(meta["X-Amz-Tagging"])
}

// Tags returns an object's tags.
func (b *Backend) Tags(bucketName, key string) (map[string]string, error) {
	_, rec, err := b.open(bucketName, key, false)
	if err != nil {
		return nil, err
	}
	return rec.Tags, nil
}

// SetTags replaces an object's tags (nil removes them). The body and ETag are unchanged.
func (b *Backend) SetTags(bucketName, key string, tags map[string]string) error {
	if err := ValidateTags(tags); err != nil {
		return err
	}
	bk, err := b.bucket(bucketName)
	if err != nil {
		return err
	}
	st := b.stripe(bucketName, key)
	st.Lock()
	defer st.Unlock()
	if _, ok := bk.get(key); !ok {
		return gofakes3.KeyNotFound(key)
	}
	_, sidecar, _ := b.objectPaths(bucketName, key)
	rec, err := readRecord(sidecar)
	if errors.Is(err, fs.ErrNotExist) {
		return gofakes3.KeyNotFound(key)
	} else if err != nil {
		return fmt.Errorf("s3disk: set tags: %w", err)
	}
	if len(tags) == 0 {
		tags = nil
	}
	rec.Tags = tags
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("s3disk: set tags: %w", err)
	}
	if err := b.writeFileAtomic(sidecar, data); err != nil {
		return fmt.Errorf("s3disk: set tags: %w", err)
	}
	return nil
}
