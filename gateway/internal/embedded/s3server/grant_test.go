package s3server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// keyTable is a Keys over fixed grants.
type keyTable map[string]struct {
	secret string
	grant  Grant
	from   netip.Prefix // zero: any address
}

func (k keyTable) S3Key(id string, remote netip.Addr) (string, Grant, bool, error) {
	e, ok := k[id]
	if !ok {
		return "", Grant{}, false, nil
	}
	if e.from.IsValid() && !e.from.Contains(remote) {
		return "", e.grant, true, errors.New("address not allowed")
	}
	return e.secret, e.grant, true, nil
}

const (
	aliceKey = "FRYALICE000000000001" // list, download, upload, delete: no overwrite
	bobKey   = "FRYBOB00000000000001" // upload only
	carolKey = "FRYCAROL000000000001" // read only
	daveKey  = "FRYDAVE0000000000001" // overwrite only
	eveKey   = "FRYEVE00000000000001" // everything, but only from 192.0.2.0/24
)

func grantsHarness(t *testing.T) *harness {
	keys := keyTable{
		aliceKey: {secret: "alice-secret", grant: Grant{User: "alice", Bucket: testBucket, Home: "incoming/alice/", List: true, Download: true, Upload: true, Delete: true}},
		bobKey:   {secret: "bob-secret", grant: Grant{User: "bob", Bucket: testBucket, Home: "incoming/bob/", Upload: true}},
		carolKey: {secret: "carol-secret", grant: Grant{User: "carol", Bucket: testBucket, Home: "incoming/carol/", List: true, Download: true}},
		daveKey:  {secret: "dave-secret", grant: Grant{User: "dave", Bucket: testBucket, Home: "incoming/dave/", Overwrite: true, Download: true}},
		eveKey: {secret: "eve-secret", grant: Grant{User: "eve", Bucket: testBucket, Home: "", List: true, Download: true, Upload: true, Overwrite: true, Delete: true},
			from: netip.MustParsePrefix("192.0.2.0/24")},
	}
	h := newHarness(t, func(c *Config) { c.Keys = keys })
	for _, k := range []string{"incoming/alice/old.csv", "incoming/bob/b.csv", "incoming/carol/c.csv", "incoming/dave/d.csv", "incoming/demo/secret.csv"} {
		h.put(k, "x,y\n1,2\n")
	}
	h.takeChanges()
	return h
}

// TestUserKeysConfined: a user's key reaches only the user's bucket and home, and only with
// the user's permissions; everything else is AccessDenied and changes nothing.
func TestUserKeysConfined(t *testing.T) {
	h := grantsHarness(t)
	ctx := t.Context()
	clients := map[string]*s3.Client{
		"alice": newClient(h.url, aliceKey, "alice-secret"), "bob": newClient(h.url, bobKey, "bob-secret"),
		"carol": newClient(h.url, carolKey, "carol-secret"), "dave": newClient(h.url, daveKey, "dave-secret"),
		"eve": newClient(h.url, eveKey, "eve-secret"),
	}
	b := aws.String(testBucket)
	put := func(key string) func(*s3.Client) error {
		return func(c *s3.Client) error {
			_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String(key), Body: strings.NewReader("new\n")})
			return err
		}
	}
	get := func(key string) func(*s3.Client) error {
		return func(c *s3.Client) error {
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: aws.String(key)})
			if err == nil {
				out.Body.Close()
			}
			return err
		}
	}
	list := func(prefix string) func(*s3.Client) error {
		return func(c *s3.Client) error {
			_, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: b, Prefix: aws.String(prefix), Delimiter: aws.String("/")})
			return err
		}
	}
	del := func(key string) func(*s3.Client) error {
		return func(c *s3.Client) error {
			_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: b, Key: aws.String(key)})
			return err
		}
	}
	copyObj := func(src, dst string) func(*s3.Client) error {
		return func(c *s3.Client) error {
			_, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: b, Key: aws.String(dst), CopySource: aws.String(testBucket + "/" + src)})
			return err
		}
	}
	cases := []struct {
		user, name string
		op         func(*s3.Client) error
		want       string // "" = allowed, else the error code
	}{
		{"alice", "upload a new file in her home", put("incoming/alice/new.csv"), ""},
		{"alice", "overwrite without the permission", put("incoming/alice/old.csv"), "AccessDenied"},
		{"alice", "upload into another home", put("incoming/demo/x.csv"), "AccessDenied"},
		{"alice", "upload beside her home (a prefix of it, not inside)", put("incoming/alice.csv"), "AccessDenied"},
		{"alice", "read her file", get("incoming/alice/old.csv"), ""},
		{"alice", "read another home's file", get("incoming/demo/secret.csv"), "AccessDenied"},
		{"alice", "list her home", list("incoming/alice/"), ""},
		{"alice", "list the parent", list("incoming/"), "AccessDenied"},
		{"alice", "list without the slash (would match incoming/alice2/)", list("incoming/alice"), "AccessDenied"},
		{"alice", "list the whole bucket", list(""), "AccessDenied"},
		{"alice", "list buckets", func(c *s3.Client) error { _, err := c.ListBuckets(ctx, &s3.ListBucketsInput{}); return err }, "AccessDenied"},
		{"alice", "another bucket", func(c *s3.Client) error {
			_, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("other"), Prefix: aws.String("incoming/alice/")})
			return err
		}, "AccessDenied"},
		{"alice", "create a bucket", func(c *s3.Client) error {
			_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("mine")})
			return err
		}, "AccessDenied"},
		{"alice", "copy in from another home", copyObj("incoming/demo/secret.csv", "incoming/alice/stolen.csv"), "AccessDenied"},
		{"alice", "copy within her home to a new key", copyObj("incoming/alice/old.csv", "incoming/alice/copy.csv"), ""},
		{"alice", "tag an object", func(c *s3.Client) error {
			_, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: b, Key: aws.String("incoming/alice/old.csv"),
				Tagging: &s3types.Tagging{TagSet: []s3types.Tag{{Key: aws.String("ferry-sha256"), Value: aws.String("forged")}}}})
			return err
		}, "AccessDenied"},
		{"alice", "upload with tags", func(c *s3.Client) error {
			_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String("incoming/alice/tagged.csv"), Body: strings.NewReader("x"),
				Tagging: aws.String("ferry-sha256=forged")})
			return err
		}, "AccessDenied"},
		{"alice", "delete outside her home in a batch", func(c *s3.Client) error {
			out, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: b, Delete: &s3types.Delete{Objects: []s3types.ObjectIdentifier{
				{Key: aws.String("incoming/alice/copy.csv")}, {Key: aws.String("incoming/demo/secret.csv")}}}})
			if err == nil && len(out.Errors) > 0 {
				return errors.New(aws.ToString(out.Errors[0].Code))
			}
			return err
		}, "AccessDenied"},
		{"alice", "delete in her home", del("incoming/alice/copy.csv"), ""},
		{"alice", "list uploads", func(c *s3.Client) error {
			_, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: b, Prefix: aws.String("incoming/alice/")})
			return err
		}, "AccessDenied"},

		{"bob", "upload a new file", put("incoming/bob/new.csv"), ""},
		{"bob", "overwrite", put("incoming/bob/b.csv"), "AccessDenied"},
		{"bob", "read his own file", get("incoming/bob/b.csv"), "AccessDenied"},
		{"bob", "list his home", list("incoming/bob/"), "AccessDenied"},
		{"bob", "delete", del("incoming/bob/b.csv"), "AccessDenied"},

		{"carol", "read", get("incoming/carol/c.csv"), ""},
		{"carol", "upload", put("incoming/carol/new.csv"), "AccessDenied"},
		{"carol", "delete", del("incoming/carol/c.csv"), "AccessDenied"},

		{"dave", "overwrite", put("incoming/dave/d.csv"), ""},
		{"dave", "upload a new file", put("incoming/dave/new.csv"), "AccessDenied"},

		{"eve", "from an address not allowed", get("incoming/demo/secret.csv"), "AccessDenied"},
	}
	for _, c := range cases {
		err := c.op(clients[c.user])
		if got := errCode(err); got != c.want && !(c.want == "AccessDenied" && err != nil && strings.Contains(err.Error(), "AccessDenied")) {
			t.Errorf("%s: %s: got %v, want %q", c.user, c.name, err, c.want)
		}
	}
	// What was refused changed nothing.
	if got := h.get("incoming/alice/old.csv"); got != "x,y\n1,2\n" {
		t.Errorf("old.csv overwritten: %q", got)
	}
	if got := h.get("incoming/demo/secret.csv"); got != "x,y\n1,2\n" {
		t.Errorf("secret.csv changed: %q", got)
	}
	for _, k := range []string{"incoming/alice/stolen.csv", "incoming/alice/tagged.csv", "incoming/dave/new.csv", "incoming/carol/new.csv", "incoming/demo/x.csv"} {
		if _, err := h.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: b, Key: aws.String(k)}); errCode(err) != "NotFound" {
			t.Errorf("%s exists after a refused write (%v)", k, err)
		}
	}
	if _, err := newClient(h.url, "FRYNOBODY00000000001", "x").ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: b}); errCode(err) != "InvalidAccessKeyId" {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := newClient(h.url, aliceKey, "wrong").ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: b, Prefix: aws.String("incoming/alice/")}); errCode(err) != "SignatureDoesNotMatch" {
		t.Errorf("wrong secret: %v", err)
	}
}

// TestUserKeyAttribution: a user's write carries the user as uploader, whatever the client
// claims, in the object's metadata and in S3's event; multipart uploads too; a presigned URL
// of the user's key is confined like the key.
func TestUserKeyAttribution(t *testing.T) {
	h := grantsHarness(t)
	ctx := t.Context()
	alice := newClient(h.url, aliceKey, "alice-secret")
	b := aws.String(testBucket)
	if _, err := alice.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String("incoming/alice/claim.csv"), Body: strings.NewReader("a\n"),
		Metadata: map[string]string{"ferry-user": "demo", "ferry-transfer-id": "0123456789abcdef01234567", "ferry-protocol": "sftp", "team": "x"}}); err != nil {
		t.Fatal(err)
	}
	// A multipart upload, parts of 5 MiB.
	big := bytes.Repeat([]byte("0123456789abcdef"), (5<<20+100)/16)
	mpu, err := alice.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: b, Key: aws.String("incoming/alice/big.bin"),
		Metadata: map[string]string{"ferry-user": "demo"}})
	if err != nil {
		t.Fatal(err)
	}
	var parts []s3types.CompletedPart
	for i, chunk := range [][]byte{big[:5<<20], big[5<<20:]} {
		up, err := alice.UploadPart(ctx, &s3.UploadPartInput{Bucket: b, Key: aws.String("incoming/alice/big.bin"), UploadId: mpu.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(chunk)})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, s3types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	if _, err := alice.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: b, Key: aws.String("incoming/alice/big.bin"),
		UploadId: mpu.UploadId, MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"incoming/alice/claim.csv", "incoming/alice/big.bin"} {
		head, err := h.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: b, Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		m := head.Metadata
		if m["ferry-user"] != "alice" || m["ferry-protocol"] != "s3" || !strings.HasPrefix(m["ferry-client"], "127.0.0.1:") ||
			len(m["ferry-transfer-id"]) != 16 || m["ferry-transfer-id"] == "0123456789abcdef01234567" {
			t.Errorf("%s: metadata %v", key, m)
		}
		if key == "incoming/alice/claim.csv" && m["team"] != "x" {
			t.Errorf("the client's own metadata was dropped: %v", m)
		}
	}
	var reqs []string
	for _, c := range h.takeChanges() {
		reqs = append(reqs, c.Reason+" "+c.Key+" by "+c.Requester)
	}
	want := "PutObject incoming/alice/claim.csv by alice|CompleteMultipartUpload incoming/alice/big.bin by alice"
	if strings.Join(reqs, "|") != want {
		t.Errorf("changes %q, want %q", reqs, want)
	}

	// A multipart upload over an existing key, without overwrite: refused at completion.
	mpu2, err := alice.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: b, Key: aws.String("incoming/alice/old.csv")})
	if err != nil {
		t.Fatal(err)
	}
	up, err := alice.UploadPart(ctx, &s3.UploadPartInput{Bucket: b, Key: aws.String("incoming/alice/old.csv"), UploadId: mpu2.UploadId,
		PartNumber: aws.Int32(1), Body: strings.NewReader("replaced")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: b, Key: aws.String("incoming/alice/old.csv"), UploadId: mpu2.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: []s3types.CompletedPart{{ETag: up.ETag, PartNumber: aws.Int32(1)}}}})
	if errCode(err) != "AccessDenied" || h.get("incoming/alice/old.csv") != "x,y\n1,2\n" {
		t.Errorf("multipart overwrite without the permission: %v", err)
	}
	if _, err := alice.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: b, Key: aws.String("incoming/alice/old.csv"), UploadId: mpu2.UploadId}); err != nil {
		t.Errorf("abort her own upload: %v", err)
	}

	presign := s3.NewPresignClient(alice)
	for key, wantStatus := range map[string]int{"incoming/alice/claim.csv": http.StatusOK, "incoming/demo/secret.csv": http.StatusForbidden} {
		req, err := presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: aws.String(key)}, s3.WithPresignExpires(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(req.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantStatus {
			t.Errorf("presigned GET of %s: %s, want %d", key, resp.Status, wantStatus)
		}
	}
}
