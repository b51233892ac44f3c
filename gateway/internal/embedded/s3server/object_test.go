package s3server

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestPutGetHeadRoundTrip(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	body := "hello, ferry\n"
	out, err := h.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String("dir/hello.txt"), Body: strings.NewReader(body),
		ContentType: aws.String("text/plain"), CacheControl: aws.String("no-cache"),
		Metadata: map[string]string{"ferry-user": "demo", "Mixed-Case": "Value with spaces"},
		Tagging:  aws.String("a=1&b=two"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(out.ETag), `"`+md5hex(body)+`"`; got != want {
		t.Errorf("PutObject ETag %s, want %s", got, want)
	}

	head, err := h.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("dir/hello.txt")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt64(head.ContentLength) != int64(len(body)) || aws.ToString(head.ETag) != `"`+md5hex(body)+`"` {
		t.Errorf("HEAD size %d etag %s", aws.ToInt64(head.ContentLength), aws.ToString(head.ETag))
	}
	if aws.ToString(head.ContentType) != "text/plain" || aws.ToString(head.CacheControl) != "no-cache" {
		t.Errorf("HEAD content-type %q cache-control %q", aws.ToString(head.ContentType), aws.ToString(head.CacheControl))
	}
	if head.Metadata["ferry-user"] != "demo" || head.Metadata["mixed-case"] != "Value with spaces" || len(head.Metadata) != 2 {
		t.Errorf("HEAD metadata %v", head.Metadata)
	}
	if aws.ToInt32(head.TagCount) != 2 {
		t.Errorf("HEAD tag count %d, want 2", aws.ToInt32(head.TagCount))
	}
	if head.LastModified == nil || time.Since(*head.LastModified) > time.Minute {
		t.Errorf("HEAD last-modified %v", head.LastModified)
	}

	if got := h.get("dir/hello.txt"); got != body {
		t.Errorf("GET %q, want %q", got, body)
	}
	// The request headers the SDK sends (x-amz-date, checksums...) are not stored as metadata.
	get, err := h.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("dir/hello.txt")})
	if err != nil {
		t.Fatal(err)
	}
	get.Body.Close()
	if len(get.Metadata) != 2 {
		t.Errorf("GET metadata %v", get.Metadata)
	}

	tags, err := h.client.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(testBucket), Key: aws.String("dir/hello.txt")})
	if err != nil {
		t.Fatal(err)
	}
	if got := tagMap(tags.TagSet); len(got) != 2 || got["a"] != "1" || got["b"] != "two" {
		t.Errorf("tags %v", got)
	}

	_, err = h.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("dir")})
	if httpStatus(err) != http.StatusNotFound {
		t.Errorf("HEAD missing key: %v", err)
	}
	_, err = h.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("nope")})
	if errCode(err) != "NoSuchKey" {
		t.Errorf("GET missing key: %v", err)
	}
	_, err = h.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("nobucket"), Key: aws.String("x")})
	if errCode(err) != "NoSuchBucket" {
		t.Errorf("GET missing bucket: %v", err)
	}
	h.tmpEmpty()
}

func tagMap(ts []types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range ts {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func TestRangedAndConditionalGet(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	body := "0123456789abcdefghij"
	etag := aws.ToString(h.put("r", body).ETag)
	for _, tc := range []struct {
		rng, want, contentRange string
	}{
		{"bytes=0-4", "01234", "bytes 0-4/20"},
		{"bytes=10-", "abcdefghij", "bytes 10-19/20"},
		{"bytes=-3", "hij", "bytes 17-19/20"},
		{"bytes=15-100", "fghij", "bytes 15-19/20"},
	} {
		out, err := h.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("r"), Range: aws.String(tc.rng)})
		if err != nil {
			t.Fatalf("%s: %v", tc.rng, err)
		}
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if string(b) != tc.want || aws.ToString(out.ContentRange) != tc.contentRange || aws.ToInt64(out.ContentLength) != int64(len(tc.want)) {
			t.Errorf("%s: got %q range %q length %d", tc.rng, b, aws.ToString(out.ContentRange), aws.ToInt64(out.ContentLength))
		}
	}
	_, err := h.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("r"), Range: aws.String("bytes=20-")})
	if errCode(err) != "InvalidRange" {
		t.Errorf("range past end: %v", err)
	}
	// If-Match guards readers (s3store's reader) against an object replaced mid-read.
	_, err = h.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("r"), IfMatch: aws.String(`"0000"`)})
	if httpStatus(err) != http.StatusPreconditionFailed {
		t.Errorf("If-Match mismatch: %v", err)
	}
	out, err := h.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("r"), IfMatch: aws.String(etag), Range: aws.String("bytes=1-1")})
	if err != nil {
		t.Fatalf("If-Match match: %v", err)
	}
	out.Body.Close()
	_, err = h.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("r"), IfNoneMatch: aws.String(etag)})
	if httpStatus(err) != http.StatusNotModified {
		t.Errorf("If-None-Match match: %v", err)
	}
	_, err = h.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("r"), IfMatch: aws.String(`"0000"`)})
	if httpStatus(err) != http.StatusPreconditionFailed {
		t.Errorf("HEAD If-Match mismatch: %v", err)
	}
}

func TestConditionalPut(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	put := func(body string, mod func(*s3.PutObjectInput)) error {
		in := &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("c"), Body: strings.NewReader(body)}
		mod(in)
		_, err := h.client.PutObject(ctx, in)
		return err
	}
	if err := put("one", func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }); err != nil {
		t.Fatalf("If-None-Match on a new key: %v", err)
	}
	if err := put("two", func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }); httpStatus(err) != http.StatusPreconditionFailed {
		t.Errorf("If-None-Match on an existing key: %v", err)
	}
	if err := put("three", func(in *s3.PutObjectInput) { in.IfMatch = aws.String(`"` + md5hex("nope") + `"`) }); httpStatus(err) != http.StatusPreconditionFailed {
		t.Errorf("If-Match mismatch: %v", err)
	}
	if err := put("four", func(in *s3.PutObjectInput) { in.IfMatch = aws.String(`"` + md5hex("one") + `"`) }); err != nil {
		t.Errorf("If-Match match: %v", err)
	}
	if got := h.get("c"); got != "four" {
		t.Errorf("content %q, want four", got)
	}
	if n := len(h.takeChanges()); n != 2 {
		t.Errorf("%d changes, want 2 (failed conditions change nothing)", n)
	}
	h.tmpEmpty()
}

func TestCopyObject(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	_, err := h.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String("src dir/a+b%.txt"), Body: strings.NewReader("copy me"),
		ContentType: aws.String("text/plain"), Metadata: map[string]string{"old": "1", "keep": "k"}, Tagging: aws.String("t=1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	src := testBucket + "/" + urlEscapeKey("src dir/a+b%.txt")
	// COPY (the default): metadata and tags come from the source; request headers are ignored.
	cp, err := h.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String("dst/copy"), CopySource: aws.String(src),
		Metadata: map[string]string{"ignored": "x"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(cp.CopyObjectResult.ETag) != `"`+md5hex("copy me")+`"` {
		t.Errorf("copy etag %s", aws.ToString(cp.CopyObjectResult.ETag))
	}
	head, err := h.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("dst/copy")})
	if err != nil {
		t.Fatal(err)
	}
	if len(head.Metadata) != 2 || head.Metadata["old"] != "1" || aws.ToString(head.ContentType) != "text/plain" || aws.ToInt32(head.TagCount) != 1 {
		t.Errorf("COPY: metadata %v content-type %q tags %d", head.Metadata, aws.ToString(head.ContentType), aws.ToInt32(head.TagCount))
	}
	if got := h.get("dst/copy"); got != "copy me" {
		t.Errorf("copy content %q", got)
	}
	// REPLACE: only the request's metadata; tags replaced too.
	_, err = h.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String("dst/replaced"), CopySource: aws.String(src),
		MetadataDirective: types.MetadataDirectiveReplace, Metadata: map[string]string{"new": "2"},
		TaggingDirective: types.TaggingDirectiveReplace, Tagging: aws.String("x=1&y=2"),
	})
	if err != nil {
		t.Fatal(err)
	}
	head, err = h.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("dst/replaced")})
	if err != nil {
		t.Fatal(err)
	}
	if len(head.Metadata) != 1 || head.Metadata["new"] != "2" || aws.ToInt32(head.TagCount) != 2 {
		t.Errorf("REPLACE: metadata %v tags %d", head.Metadata, aws.ToInt32(head.TagCount))
	}
	// Copying onto itself without a change is refused, as by S3.
	_, err = h.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(testBucket), Key: aws.String("dst/copy"), CopySource: aws.String(testBucket + "/dst/copy")})
	if errCode(err) != "InvalidRequest" || httpStatus(err) != http.StatusBadRequest {
		t.Errorf("copy to itself: %v", err)
	}
	_, err = h.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String("dst/cond"), CopySource: aws.String(src),
		CopySourceIfMatch: aws.String(`"0000"`),
	})
	if httpStatus(err) != http.StatusPreconditionFailed {
		t.Errorf("copy-source-if-match mismatch: %v", err)
	}
	_, err = h.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(testBucket), Key: aws.String("dst/none"), CopySource: aws.String(testBucket + "/missing")})
	if errCode(err) != "NoSuchKey" {
		t.Errorf("copy of a missing source: %v", err)
	}
	var reasons []string
	for _, c := range h.takeChanges() {
		reasons = append(reasons, c.Reason+" "+c.Key)
	}
	if want := "PutObject src dir/a+b%.txt,CopyObject dst/copy,CopyObject dst/replaced"; strings.Join(reasons, ",") != want {
		t.Errorf("changes %q, want %q", reasons, want)
	}
	h.tmpEmpty()
}

// urlEscapeKey escapes a key for x-amz-copy-source as the SDK documents.
func urlEscapeKey(k string) string {
	var b strings.Builder
	for _, c := range []byte(k) {
		if c == '/' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func TestDeleteObjects(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	for _, k := range []string{"a", "b", "c"} {
		h.put(k, k)
	}
	h.takeChanges()
	if _, err := h.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(testBucket), Key: aws.String("a")}); err != nil {
		t.Fatal(err)
	}
	// Deleting a missing key succeeds, as in S3, and changes nothing.
	if _, err := h.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(testBucket), Key: aws.String("a")}); err != nil {
		t.Fatal(err)
	}
	out, err := h.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(testBucket), Delete: &types.Delete{
		Objects: []types.ObjectIdentifier{{Key: aws.String("b")}, {Key: aws.String("c")}, {Key: aws.String("zz")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Deleted) != 3 || len(out.Errors) != 0 {
		t.Errorf("DeleteObjects: %d deleted, %d errors", len(out.Deleted), len(out.Errors))
	}
	list, err := h.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Contents) != 0 {
		t.Errorf("%d objects left", len(list.Contents))
	}
	var got []string
	for _, c := range h.takeChanges() {
		if !c.Deleted || c.Reason != "DeleteObject" {
			t.Errorf("change %+v", c)
		}
		got = append(got, c.Key)
	}
	if strings.Join(got, ",") != "a,b,c" {
		t.Errorf("deleted %v, want a,b,c", got)
	}
}

func TestTagging(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	etag := aws.ToString(h.put("f", "data").ETag)
	_, err := h.client.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{
		Bucket: aws.String(testBucket), Key: aws.String("f"),
		Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String("ferry-mode"), Value: aws.String("0644")}, {Key: aws.String("k"), Value: aws.String("v=1&x")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.client.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(testBucket), Key: aws.String("f")})
	if err != nil {
		t.Fatal(err)
	}
	if got := tagMap(out.TagSet); len(got) != 2 || got["ferry-mode"] != "0644" || got["k"] != "v=1&x" {
		t.Errorf("tags %v", got)
	}
	// Tagging changes neither the body nor the ETag, and is not a write.
	if got := h.get("f"); got != "data" {
		t.Errorf("content after tagging %q", got)
	}
	head, _ := h.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("f")})
	if aws.ToString(head.ETag) != etag {
		t.Errorf("etag changed by tagging")
	}
	tooMany := make([]types.Tag, 11)
	for i := range tooMany {
		tooMany[i] = types.Tag{Key: aws.String(fmt.Sprint("k", i)), Value: aws.String("v")}
	}
	_, err = h.client.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String(testBucket), Key: aws.String("f"), Tagging: &types.Tagging{TagSet: tooMany}})
	if errCode(err) != "InvalidTag" || httpStatus(err) != http.StatusBadRequest {
		t.Errorf("11 tags: %v", err)
	}
	if _, err := h.client.DeleteObjectTagging(ctx, &s3.DeleteObjectTaggingInput{Bucket: aws.String(testBucket), Key: aws.String("f")}); err != nil {
		t.Fatal(err)
	}
	out, err = h.client.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(testBucket), Key: aws.String("f")})
	if err != nil || len(out.TagSet) != 0 {
		t.Errorf("after delete: %v %v", out, err)
	}
	_, err = h.client.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(testBucket), Key: aws.String("missing")})
	if errCode(err) != "NoSuchKey" {
		t.Errorf("tags of a missing key: %v", err)
	}
	if n := len(h.takeChanges()); n != 1 {
		t.Errorf("%d changes, want 1 (the put)", n)
	}
}

func TestUnsupportedSubresources(t *testing.T) {
	h := newHarness(t)
	h.put("k", "original")
	_, err := h.client.PutObjectAcl(t.Context(), &s3.PutObjectAclInput{Bucket: aws.String(testBucket), Key: aws.String("k"), ACL: types.ObjectCannedACLPrivate})
	if httpStatus(err) != http.StatusNotImplemented {
		t.Errorf("PutObjectAcl: %v", err)
	}
	// gofakes3 alone would have stored the ACL request as the object.
	if got := h.get("k"); got != "original" {
		t.Errorf("object now %q", got)
	}
}
