package s3server

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// multipartETag is S3's: MD5 of the concatenated binary part MD5s, "-", the part count.
func multipartETag(parts ...[]byte) string {
	h := md5.New()
	for _, p := range parts {
		sum := md5.Sum(p)
		h.Write(sum[:])
	}
	return fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(h.Sum(nil)), len(parts))
}

func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestMultipartUpload(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	c := h.client
	key := "big/file.bin"
	create, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(testBucket), Key: aws.String(key), ContentType: aws.String("application/x-test"),
		Metadata: map[string]string{"ferry-user": "u"}, Tagging: aws.String("stage=raw"),
	})
	if err != nil {
		t.Fatal(err)
	}
	id := create.UploadId
	parts := [][]byte{
		bytes.Repeat([]byte("a"), 5<<20),
		bytes.Repeat([]byte("b"), 5<<20+7),
		[]byte("tail"),
	}
	var done []types.CompletedPart
	// Part 2 is sent twice: the second replaces the first.
	for i, p := range append([][]byte{[]byte("replaced later")}, parts...) {
		num := int32(i)
		if i == 0 {
			num = 2
		}
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(testBucket), Key: aws.String(key), UploadId: id, PartNumber: aws.Int32(num), Body: bytes.NewReader(p),
		})
		if err != nil {
			t.Fatalf("part %d: %v", num, err)
		}
		if i > 0 {
			done = append(done, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
		}
	}
	// Parts are files on disk, not memory.
	if files := filesUnder(t, filepath.Join(h.dir, "uploads")); len(files) != 4 { // upload.json + 3 parts
		t.Errorf("upload directory holds %v", files)
	}
	lp, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(testBucket), Key: aws.String(key), UploadId: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(lp.Parts) != 3 || aws.ToInt64(lp.Parts[1].Size) != 5<<20+7 || aws.ToString(lp.Parts[1].ETag) != aws.ToString(done[1].ETag) {
		t.Errorf("ListParts: %+v", lp.Parts)
	}
	lp, err = c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(testBucket), Key: aws.String(key), UploadId: id, MaxParts: aws.Int32(2)})
	if err != nil || len(lp.Parts) != 2 || !aws.ToBool(lp.IsTruncated) || aws.ToString(lp.NextPartNumberMarker) != "2" {
		t.Errorf("ListParts max 2: %+v %v", lp, err)
	}
	lu, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
	if err != nil || len(lu.Uploads) != 1 || aws.ToString(lu.Uploads[0].Key) != key || aws.ToString(lu.Uploads[0].UploadId) != aws.ToString(id) {
		t.Fatalf("ListMultipartUploads: %+v %v", lu, err)
	}
	// Nothing is visible before completion.
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)}); httpStatus(err) != http.StatusNotFound {
		t.Errorf("object visible before completion: %v", err)
	}
	if n := len(h.takeChanges()); n != 0 {
		t.Errorf("%d changes before completion", n)
	}
	// A wrong ETag or a missing part is refused.
	bad := append([]types.CompletedPart{}, done...)
	bad[0].ETag = aws.String(`"00000000000000000000000000000000"`)
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key), UploadId: id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: bad}})
	if errCode(err) != "InvalidPart" {
		t.Errorf("complete with a wrong etag: %v", err)
	}
	comp, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key), UploadId: id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done}})
	if err != nil {
		t.Fatal(err)
	}
	wantETag := multipartETag(parts...)
	if aws.ToString(comp.ETag) != wantETag {
		t.Errorf("complete etag %s, want %s", aws.ToString(comp.ETag), wantETag)
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(head.ETag) != wantETag || aws.ToInt64(head.ContentLength) != 10<<20+11 ||
		aws.ToString(head.ContentType) != "application/x-test" || head.Metadata["ferry-user"] != "u" || aws.ToInt32(head.TagCount) != 1 {
		t.Errorf("HEAD: etag %s size %d type %s meta %v tags %d", aws.ToString(head.ETag), aws.ToInt64(head.ContentLength),
			aws.ToString(head.ContentType), head.Metadata, aws.ToInt32(head.TagCount))
	}
	list, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket)})
	if err != nil || len(list.Contents) != 1 || aws.ToString(list.Contents[0].ETag) != wantETag {
		t.Errorf("list: %+v %v", list, err)
	}
	get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key), Range: aws.String(fmt.Sprintf("bytes=%d-", 10<<20))})
	if err != nil {
		t.Fatal(err)
	}
	tail, _ := io.ReadAll(get.Body)
	get.Body.Close()
	if string(tail) != "bbbbbbbtail" {
		t.Errorf("tail %q", tail)
	}
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key), IfMatch: aws.String(wantETag)}); err != nil {
		t.Errorf("If-Match with the multipart etag: %v", err)
	}
	full := h.get(key)
	if want := string(bytes.Join(parts, nil)); full != want {
		t.Errorf("content differs (%d bytes, want %d)", len(full), len(want))
	}
	changes := h.takeChanges()
	if len(changes) != 1 || changes[0].Reason != "CompleteMultipartUpload" || changes[0].ETag != strings.Trim(wantETag, `"`) || changes[0].Size != 10<<20+11 {
		t.Errorf("changes %+v", changes)
	}
	if files := filesUnder(t, filepath.Join(h.dir, "uploads")); len(files) != 0 {
		t.Errorf("upload leftovers %v", files)
	}
	lu, err = c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
	if err != nil || len(lu.Uploads) != 0 {
		t.Errorf("uploads after completion: %+v %v", lu.Uploads, err)
	}
	_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String(key), UploadId: id, PartNumber: aws.Int32(1), Body: strings.NewReader("x")})
	if errCode(err) != "NoSuchUpload" {
		t.Errorf("part after completion: %v", err)
	}
	h.tmpEmpty()
}

func TestMultipartAbortAndLimits(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	c := h.client
	var ids []*string
	for _, k := range []string{"x/1", "x/2", "y"} {
		out, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(k)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String(k), UploadId: out.UploadId,
			PartNumber: aws.Int32(1), Body: strings.NewReader("small")}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, out.UploadId)
	}
	lu, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket), Delimiter: aws.String("/")})
	if err != nil || len(lu.Uploads) != 1 || len(lu.CommonPrefixes) != 1 || aws.ToString(lu.CommonPrefixes[0].Prefix) != "x/" {
		t.Errorf("ListMultipartUploads with delimiter: %+v %v", lu, err)
	}
	lu, err = c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket), Prefix: aws.String("x/"), MaxUploads: aws.Int32(1)})
	if err != nil || len(lu.Uploads) != 1 || !aws.ToBool(lu.IsTruncated) {
		t.Fatalf("ListMultipartUploads page: %+v %v", lu, err)
	}
	lu, err = c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket), Prefix: aws.String("x/"),
		KeyMarker: lu.NextKeyMarker, UploadIdMarker: lu.NextUploadIdMarker})
	if err != nil || len(lu.Uploads) != 1 || aws.ToString(lu.Uploads[0].Key) != "x/2" {
		t.Errorf("ListMultipartUploads next page: %+v %v", lu, err)
	}

	// S3 refuses parts under 5 MiB but the last.
	_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String("y"), UploadId: ids[2], PartNumber: aws.Int32(2), Body: strings.NewReader("more")})
	if err != nil {
		t.Fatal(err)
	}
	lp, _ := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(testBucket), Key: aws.String("y"), UploadId: ids[2]})
	var parts []types.CompletedPart
	for _, p := range lp.Parts {
		parts = append(parts, types.CompletedPart{ETag: p.ETag, PartNumber: p.PartNumber})
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("y"), UploadId: ids[2],
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if errCode(err) != "EntityTooSmall" || httpStatus(err) != http.StatusBadRequest {
		t.Errorf("complete with a small part: %v", err)
	}
	// Out of order is refused.
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("y"), UploadId: ids[2],
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{parts[1], parts[0]}}})
	if errCode(err) != "InvalidPartOrder" {
		t.Errorf("complete out of order: %v", err)
	}

	for i, k := range []string{"x/1", "x/2", "y"} {
		if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(k), UploadId: ids[i]}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("y"), UploadId: ids[2]})
	if errCode(err) != "NoSuchUpload" {
		t.Errorf("second abort: %v", err)
	}
	// An upload ID is not a path.
	_, err = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("y"), UploadId: aws.String("../../buckets")})
	if errCode(err) != "NoSuchUpload" {
		t.Errorf("abort of a path: %v", err)
	}
	lu, err = c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
	if err != nil || len(lu.Uploads) != 0 {
		t.Errorf("uploads after abort: %+v %v", lu.Uploads, err)
	}
	if files := filesUnder(t, filepath.Join(h.dir, "uploads")); len(files) != 0 {
		t.Errorf("abort left %v", files)
	}
	if n := len(h.takeChanges()); n != 0 {
		t.Errorf("%d changes from aborted uploads", n)
	}
	h.tmpEmpty()
}

func TestUploadPartCopy(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MinPartSize = 4 })
	ctx := t.Context()
	c := h.client
	h.put("src", "0123456789")
	create, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("dst")})
	if err != nil {
		t.Fatal(err)
	}
	var parts []types.CompletedPart
	for i, rng := range []string{"bytes=5-9", "bytes=0-4", ""} {
		in := &s3.UploadPartCopyInput{Bucket: aws.String(testBucket), Key: aws.String("dst"), UploadId: create.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), CopySource: aws.String(testBucket + "/src")}
		if rng != "" {
			in.CopySourceRange = aws.String(rng)
		}
		out, err := c.UploadPartCopy(ctx, in)
		if err != nil {
			t.Fatalf("UploadPartCopy %s: %v", rng, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("dst"), UploadId: create.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.get("dst"); got != "56789012340123456789" {
		t.Errorf("content %q", got)
	}
	head, _ := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("dst")})
	if want := multipartETag([]byte("56789"), []byte("01234"), []byte("0123456789")); aws.ToString(head.ETag) != want {
		t.Errorf("etag %s, want %s", aws.ToString(head.ETag), want)
	}
}
