package s3server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// signedRequest builds a request signed with the SDK's own SigV4 signer (not this package's
// code), at the given time, for S3 (no double path escaping).
func (h *harness) signedRequest(t *testing.T, method, path string, body []byte, payloadHash string, hdr http.Header, at time.Time, secret string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, h.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	err = v4.NewSigner().SignHTTP(t.Context(), aws.Credentials{AccessKeyID: testKey, SecretAccessKey: secret}, req,
		payloadHash, "s3", "us-east-1", at, func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestAuthRefusals(t *testing.T) {
	h := newHarness(t)
	h.put("k", "v")
	ctx := t.Context()
	for _, tc := range []struct {
		name   string
		client *s3.Client
		code   string
		status int
	}{
		{"wrong secret", newClient(h.url, testKey, "wrong"), "SignatureDoesNotMatch", 403},
		{"unknown key", newClient(h.url, "someone", testSecret), "InvalidAccessKeyId", 403},
		{"other region", newClient(h.url, testKey, testSecret, func(o *s3.Options) { o.Region = "eu-west-1" }), "AuthorizationHeaderMalformed", 400},
		{"anonymous", newClient(h.url, testKey, testSecret, func(o *s3.Options) { o.Credentials = aws.AnonymousCredentials{} }), "AccessDenied", 403},
	} {
		_, err := tc.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("k")})
		if errCode(err) != tc.code || httpStatus(err) != tc.status {
			t.Errorf("%s: GET %v, want %s %d", tc.name, err, tc.code, tc.status)
		}
		_, err = tc.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("k"), Body: strings.NewReader("overwritten")})
		if errCode(err) != tc.code {
			t.Errorf("%s: PUT %v", tc.name, err)
		}
	}
	if got := h.get("k"); got != "v" {
		t.Errorf("object changed by refused requests: %q", got)
	}
	// A request signed an hour ago.
	req := h.signedRequest(t, "GET", "/ferry/k", nil, sha(nil), nil, time.Now().Add(-time.Hour), testSecret)
	if status, body := do(t, req); status != 403 || !strings.Contains(body, "RequestTimeTooSkewed") {
		t.Errorf("skewed request: %d %s", status, body)
	}
	// A signed header changed after signing.
	req = h.signedRequest(t, "GET", "/ferry/k", nil, sha(nil), http.Header{"X-Amz-Meta-A": {"1"}}, time.Now(), testSecret)
	req.Header.Set("X-Amz-Meta-A", "2")
	if status, body := do(t, req); status != 403 || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Errorf("tampered header: %d %s", status, body)
	}
	// The body does not match the signed payload hash: refused, nothing stored.
	req = h.signedRequest(t, "PUT", "/ferry/tampered", []byte("evil"), sha([]byte("good")), nil, time.Now(), testSecret)
	if status, body := do(t, req); status != 400 || !strings.Contains(body, "XAmzContentSHA256Mismatch") {
		t.Errorf("payload hash mismatch: %d %s", status, body)
	}
	if _, err := h.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("tampered")}); httpStatus(err) != 404 {
		t.Errorf("tampered body stored: %v", err)
	}
	if n := len(h.takeChanges()); n != 1 {
		t.Errorf("%d changes, want 1", n)
	}
	h.tmpEmpty()
}

func TestSignedPathsAndQueries(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	keys := []string{"sp ace/a+b", "pct%2F..%2Fx", "ünïcødé/ключ", "q?x=1&y=#frag", "!*'()[]$;:@,=", "a//b/./c/../d", "~tilde", strings.Repeat("long/", 200)}
	for _, k := range keys {
		h.put(k, k)
		if got := h.get(k); got != k {
			t.Errorf("%q: got %q", k, got)
		}
	}
	out, err := h.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String("ünïcødé/"), StartAfter: aws.String("ünïcødé/")})
	if err != nil || len(out.Contents) != 1 {
		t.Errorf("list with non-ASCII query: %v %v", out, err)
	}
}

func TestPresignedURLs(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	pc := s3.NewPresignClient(h.client)
	put, err := pc.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("pre signed")})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, put.Method, put.URL, strings.NewReader("via presigned PUT"))
	for k, vs := range put.SignedHeader {
		req.Header[k] = vs
	}
	if status, body := do(t, req); status != 200 {
		t.Fatalf("presigned PUT: %d %s", status, body)
	}
	get, err := pc.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("pre signed")})
	if err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequestWithContext(ctx, get.Method, get.URL, nil)
	if status, body := do(t, req); status != 200 || body != "via presigned PUT" {
		t.Errorf("presigned GET: %d %q", status, body)
	}
	req, _ = http.NewRequestWithContext(ctx, get.Method, strings.Replace(get.URL, "X-Amz-Signature=", "X-Amz-Signature=0", 1), nil)
	if status, _ := do(t, req); status != 403 {
		t.Errorf("tampered presigned GET: %d", status)
	}
	// Signed 2 hours ago, valid for one.
	old, _ := http.NewRequestWithContext(ctx, "GET", h.url+"/ferry/pre%20signed?X-Amz-Expires=3600", nil)
	u, _, err := v4.NewSigner().PresignHTTP(ctx, aws.Credentials{AccessKeyID: testKey, SecretAccessKey: testSecret}, old,
		"UNSIGNED-PAYLOAD", "s3", "us-east-1", time.Now().Add(-2*time.Hour), func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequestWithContext(ctx, "GET", u, nil)
	if status, body := do(t, req); status != 403 || !strings.Contains(body, "expired") {
		t.Errorf("expired presigned GET: %d %s", status, body)
	}
}

// chunked encodes data as aws-chunked with chunk signatures made by the SDK's stream signer.
func chunked(t *testing.T, seed string, at time.Time, data []byte, size int, tamper bool) []byte {
	seedSig, _ := hex.DecodeString(seed)
	signer := v4.NewStreamSigner(aws.Credentials{AccessKeyID: testKey, SecretAccessKey: testSecret}, "s3", "us-east-1", seedSig)
	var out bytes.Buffer
	for off := 0; ; off += size {
		chunk := data[min(off, len(data)):min(off+size, len(data))]
		sig, err := signer.GetSignature(t.Context(), nil, chunk, at)
		if err != nil {
			t.Fatal(err)
		}
		if tamper && off > 0 && len(chunk) > 0 {
			chunk = bytes.ToUpper(chunk)
		}
		fmt.Fprintf(&out, "%x;chunk-signature=%x\r\n", len(chunk), sig)
		out.Write(chunk)
		out.WriteString("\r\n")
		if len(chunk) == 0 {
			return out.Bytes()
		}
	}
}

func seedSignature(req *http.Request) string {
	_, sig, _ := strings.Cut(req.Header.Get("Authorization"), "Signature=")
	return sig
}

func TestStreamingSignedChunks(t *testing.T) {
	h := newHarness(t)
	data := bytes.Repeat([]byte("streaming chunk data "), 10000) // 210 kB
	for _, tamper := range []bool{false, true} {
		at := time.Now()
		hdr := http.Header{
			"X-Amz-Decoded-Content-Length": {fmt.Sprint(len(data))},
			"Content-Encoding":             {"aws-chunked"},
			"Content-Type":                 {"text/plain"},
		}
		// Sign with the length of the encoded body, then encode with the seed signature.
		encodedLen := len(chunked(t, strings.Repeat("0", 64), at, data, 64<<10, false))
		req := h.signedRequest(t, "PUT", "/ferry/streamed", make([]byte, encodedLen), "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", hdr, at, testSecret)
		body := chunked(t, seedSignature(req), at, data, 64<<10, tamper)
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		status, resp := do(t, req)
		if !tamper {
			if status != 200 {
				t.Fatalf("signed chunks: %d %s", status, resp)
			}
			if got := h.get("streamed"); got != string(data) {
				t.Errorf("decoded %d bytes, want %d", len(got), len(data))
			}
			head, _ := h.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("streamed")})
			if aws.ToString(head.ContentEncoding) != "" || aws.ToString(head.ContentType) != "text/plain" {
				t.Errorf("stored content-encoding %q type %q", aws.ToString(head.ContentEncoding), aws.ToString(head.ContentType))
			}
		} else if status != 403 || !strings.Contains(resp, "SignatureDoesNotMatch") {
			t.Errorf("tampered chunk: %d %s", status, resp)
		}
	}
	if got := h.get("streamed"); got != string(data) {
		t.Errorf("the tampered upload replaced the object")
	}
	if n := len(h.takeChanges()); n != 1 {
		t.Errorf("%d changes, want 1", n)
	}
	h.tmpEmpty()
}

func TestUnsignedTrailerChecksum(t *testing.T) {
	h := newHarness(t)
	data := []byte("trailing checksum body")
	for _, good := range []bool{true, false} {
		sum := crc32.ChecksumIEEE(data)
		if !good {
			sum++
		}
		crc := base64.StdEncoding.EncodeToString([]byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
		body := fmt.Sprintf("%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n", len(data), data, crc)
		hdr := http.Header{
			"X-Amz-Decoded-Content-Length": {fmt.Sprint(len(data))},
			"Content-Encoding":             {"aws-chunked"},
			"X-Amz-Trailer":                {"x-amz-checksum-crc32"},
		}
		req := h.signedRequest(t, "PUT", "/ferry/trailer", []byte(body), "STREAMING-UNSIGNED-PAYLOAD-TRAILER", hdr, time.Now(), testSecret)
		status, resp := do(t, req)
		if good && status != 200 {
			t.Fatalf("good trailer: %d %s", status, resp)
		}
		if !good && (status != 400 || !strings.Contains(resp, "BadDigest")) {
			t.Errorf("bad trailer checksum: %d %s", status, resp)
		}
	}
	if got := h.get("trailer"); got != string(data) {
		t.Errorf("content %q", got)
	}
	// The SDK itself sends aws-chunked bodies with a trailing checksum over HTTPS.
	var seen []string
	var mu sync.Mutex
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PUT" {
			mu.Lock()
			seen = append(seen, r.Header.Get("X-Amz-Content-Sha256")+" "+r.Header.Get("X-Amz-Trailer"))
			mu.Unlock()
		}
		h.srv.ServeHTTP(w, r)
	}))
	ts.StartTLS()
	defer ts.Close()
	c := newClient(ts.URL, testKey, testSecret, func(o *s3.Options) { o.HTTPClient = ts.Client() })
	_, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("tls"),
		Body: io.MultiReader(strings.NewReader("unseekable "), strings.NewReader("body")), ContentLength: aws.Int64(15)})
	if err != nil {
		t.Fatalf("PutObject over TLS: %v", err)
	}
	if got := h.get("tls"); got != "unseekable body" {
		t.Errorf("over TLS: %q", got)
	}
	if len(seen) != 1 || seen[0] != "STREAMING-UNSIGNED-PAYLOAD-TRAILER x-amz-checksum-crc32" {
		t.Errorf("the SDK sent %q; this test wants an aws-chunked body with a trailer", seen)
	}
	h.tmpEmpty()
}

func TestOptionsNeedNoAuth(t *testing.T) {
	h := newHarness(t)
	req, _ := http.NewRequestWithContext(context.Background(), "OPTIONS", h.url+"/ferry/x", nil)
	req.Header.Set("Origin", "http://localhost")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	if status, _ := do(t, req); status != 200 {
		t.Errorf("CORS preflight: %d", status)
	}
}
