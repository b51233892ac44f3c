package faultproxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/ferrygw/ferry/pipeline/testtool/faultproxy"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// upstream is a tiny server: PUT stores the body it received whole (counting truncated ones),
// GET answers it.
type upstream struct {
	srv       *httptest.Server
	got       atomic.Pointer[[]byte]
	truncated atomic.Int64
	puts      atomic.Int64
}

func startUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPut:
			b, err := io.ReadAll(r.Body)
			if err != nil || int64(len(b)) != r.ContentLength {
				u.truncated.Add(1)
				return
			}
			u.puts.Add(1)
			u.got.Store(&b)
			w.Header().Set("ETag", `"x"`)
		case http.MethodGet:
			if p := u.got.Load(); p != nil {
				w.Header().Set("Content-Length", "10")
				w.Write((*p)[:10])
			}
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func TestFaultsAsTheClientSeesThem(t *testing.T) {
	up := startUpstream(t)
	p := faultproxy.Start(t, up.srv.URL, 1)
	body := bytes.Repeat([]byte("0123456789"), 100)
	client := &http.Client{Timeout: 2 * time.Second}
	do := func(method string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest(method, p.URL+"/bucket/key", bytes.NewReader(body))
		if method == http.MethodGet {
			req.Body, req.ContentLength = nil, 0
		}
		req.Header.Set("amz-sdk-request", "attempt=2; max=3")
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	for _, tc := range []struct {
		kind       faultproxy.Kind
		method     string
		wantStatus int // 0: an error
		wantPuts   int64
		wantTrunc  int64
	}{
		{faultproxy.SlowDown, http.MethodPut, 503, 0, 0},
		{faultproxy.InternalError, http.MethodPut, 500, 0, 0},
		{faultproxy.ResetRequest, http.MethodPut, 0, 0, 1},
		{faultproxy.ResetResponse, http.MethodPut, 0, 1, 0}, // landed, answer lost (empty body)
		{faultproxy.ResetResponse, http.MethodGet, 0, 0, 0}, // half a body, then reset
		{faultproxy.Latency, http.MethodPut, 200, 1, 0},
		{faultproxy.Stall, http.MethodPut, 0, 0, 0},
		{faultproxy.StallBody, http.MethodGet, 0, 0, 0},
	} {
		t.Run(string(tc.kind)+"-"+tc.method, func(t *testing.T) {
			puts, trunc := up.puts.Load(), up.truncated.Load()
			p.SetRules(faultproxy.Rule{Kind: tc.kind, Times: 1, Delay: 300 * time.Millisecond})
			p.ResetStats()
			start := time.Now()
			resp, b, err := do(tc.method)
			switch {
			case tc.wantStatus == 0 && err == nil:
				t.Errorf("got %d %q, want a broken connection", resp.StatusCode, b)
			case tc.wantStatus != 0 && err != nil:
				t.Errorf("error %v, want status %d", err, tc.wantStatus)
			case tc.wantStatus != 0 && resp.StatusCode != tc.wantStatus:
				t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.kind == faultproxy.SlowDown && !strings.Contains(string(b), "<Code>SlowDown</Code>") {
				t.Errorf("body %q", b)
			}
			if tc.kind == faultproxy.Latency && time.Since(start) < 300*time.Millisecond {
				t.Errorf("answered after %s, want the added 300ms", time.Since(start))
			}
			// The upstream side effects land shortly after the client's view.
			deadline := time.Now().Add(2 * time.Second)
			for (up.puts.Load()-puts != tc.wantPuts || up.truncated.Load()-trunc != tc.wantTrunc) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if d := up.puts.Load() - puts; d != tc.wantPuts {
				t.Errorf("upstream stored %d requests, want %d", d, tc.wantPuts)
			}
			if d := up.truncated.Load() - trunc; d != tc.wantTrunc {
				t.Errorf("upstream saw %d truncated requests, want %d", d, tc.wantTrunc)
			}
			s := p.Stats()
			if s.Requests != 1 || s.Faults != 1 || s.ByKind[tc.kind] != 1 || s.Retries != 1 {
				t.Errorf("stats %+v", s)
			}
			// Times: 1 — the next request goes through untouched.
			if resp, _, err := do(tc.method); err != nil || resp.StatusCode != 200 {
				t.Errorf("after the one fault: %v %v", resp, err)
			}
		})
	}
}

func TestRateAndOperation(t *testing.T) {
	up := startUpstream(t)
	p := faultproxy.Start(t, up.srv.URL, 7)
	p.SetRules(faultproxy.Rule{Op: "PutObject", Kind: faultproxy.SlowDown, Rate: 0.25})
	fails := 0
	for range 400 {
		req, _ := http.NewRequest(http.MethodPut, p.URL+"/b/k", strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 503 {
			fails++
		}
		get, err := http.Get(p.URL + "/b/k")
		if err != nil {
			t.Fatal(err)
		}
		get.Body.Close()
		if get.StatusCode != 200 {
			t.Fatalf("GetObject got a fault from a PutObject rule: %d", get.StatusCode)
		}
	}
	if fails < 60 || fails > 140 {
		t.Errorf("%d of 400 PutObjects failed at rate 0.25", fails)
	}
	if s := p.Stats(); s.ByOp["PutObject"] != 400 || s.ByOp["GetObject"] != 400 || s.ByRule["slowdown"] != fails {
		t.Errorf("stats %+v", s)
	}
}

func TestOperations(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		header         string
		want           string
	}{
		{"PUT", "/b/k?partNumber=1&uploadId=u", "", "UploadPart"},
		{"PUT", "/b/k?partNumber=1&uploadId=u", "b/src", "UploadPartCopy"},
		{"PUT", "/b/k", "b/src", "CopyObject"},
		{"PUT", "/b/k?tagging", "", "PutObjectTagging"},
		{"PUT", "/b/k", "", "PutObject"},
		{"POST", "/b/k?uploads", "", "CreateMultipartUpload"},
		{"POST", "/b/k?uploadId=u", "", "CompleteMultipartUpload"},
		{"DELETE", "/b/k?uploadId=u", "", "AbortMultipartUpload"},
		{"DELETE", "/b/k", "", "DeleteObject"},
		{"GET", "/b/k?uploadId=u", "", "ListParts"},
		{"GET", "/b?list-type=2&prefix=x", "", "ListObjectsV2"},
		{"GET", "/b?uploads", "", "ListMultipartUploads"},
		{"GET", "/b/dir/k", "", "GetObject"},
		{"HEAD", "/b/k", "", "HeadObject"},
		{"HEAD", "/b", "", "HeadBucket"},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if tc.header != "" {
			r.Header.Set("X-Amz-Copy-Source", tc.header)
		}
		if op, bucket, _ := faultproxy.Operation(r); op != tc.want || bucket != "b" {
			t.Errorf("%s %s = %s (bucket %q), want %s", tc.method, tc.target, op, bucket, tc.want)
		}
	}
}

// Through the proxy, the AWS SDK retries SlowDown, 500 and resets and the request succeeds; the
// proxy sees the retries the SDK marked.
func TestSDKRetriesThroughTheProxy(t *testing.T) {
	srv := s3test.Start(t)
	p := faultproxy.Start(t, srv.Endpoint, 3)
	client := s3.New(s3.Options{
		Region: srv.Region, BaseEndpoint: aws.String(p.URL), UsePathStyle: true,
		Credentials: srv.Client().Options().Credentials,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, kind := range []faultproxy.Kind{faultproxy.SlowDown, faultproxy.InternalError, faultproxy.ResetRequest, faultproxy.ResetResponse} {
		p.SetRules(faultproxy.Rule{Op: "PutObject", Kind: kind, Times: 2})
		p.ResetStats()
		key := "k" + string(rune('a'+i))
		_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &srv.Bucket, Key: &key, Body: strings.NewReader("hello world")})
		if err != nil {
			t.Errorf("%s: PutObject after two faults: %v", kind, err)
			continue
		}
		if s := p.Stats(); s.ByOp["PutObject"] != 3 || s.RetryOp["PutObject"] != 2 {
			t.Errorf("%s: stats %+v, want 3 attempts of which 2 retries", kind, s)
		}
	}
	// Three faults in a row exhaust the SDK's three attempts: the error reaches the caller.
	p.SetRules(faultproxy.Rule{Op: "PutObject", Kind: faultproxy.SlowDown, Times: 3})
	_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &srv.Bucket, Key: aws.String("z"), Body: strings.NewReader("x")})
	var api smithy.APIError
	var maxErr *retry.MaxAttemptsError
	if !errors.As(err, &api) || api.ErrorCode() != "SlowDown" || !errors.As(err, &maxErr) {
		t.Errorf("after three SlowDowns: %v", err)
	}
}
