package s3store

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/pipeline/testtool/faultproxy"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// faultEnv is a store whose S3 client goes through a fault-injecting proxy to versitygw; raw
// reaches versitygw directly, to judge what really landed.
type faultEnv struct {
	srv   *s3test.Server
	proxy *faultproxy.Proxy
	raw   *s3.Client
	fs    storage.FS
}

func newFaultEnv(t *testing.T, stall time.Duration) *faultEnv {
	t.Helper()
	srv := s3test.Start(t)
	p := faultproxy.Start(t, srv.Endpoint, 42)
	client, err := NewClient(t.Context(), ClientConfig{Endpoint: p.URL, Region: srv.Region, PathStyle: true,
		AccessKey: srv.AccessKey, Secret: srv.Secret, StallTimeout: stall})
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t, client, Config{Bucket: srv.Bucket, Concurrency: 2})
	return &faultEnv{srv: srv, proxy: p, raw: srv.Client(), fs: st.Home("", "home")}
}

func (e *faultEnv) pending(t *testing.T) int {
	t.Helper()
	out, err := e.raw.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &e.srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}

// A commit whose answer is lost after the server acted, on every attempt the SDK makes, is
// still a commit: the store finds its own object (transfer id and size) and says so. Without
// that, the client would be told its file failed while S3 holds it and the pipeline processes it.
// And a multipart upload started by an attempt whose answer was lost is aborted, not left behind.
func TestLostAnswersAreResolved(t *testing.T) {
	e := newFaultEnv(t, 0)
	small := randBytes(t, 1000)
	large := randBytes(t, 2*testPartSize+7)
	for i, tc := range []struct {
		name  string
		data  []byte
		rules []faultproxy.Rule
	}{
		{"put-answer-lost", small, []faultproxy.Rule{{Op: "PutObject", Kind: faultproxy.ResetResponse, Times: 3}}},
		{"complete-answer-lost", large, []faultproxy.Rule{{Op: "CompleteMultipartUpload", Kind: faultproxy.ResetResponse, Times: 1}}},
		{"complete-answer-lost-every-try", large, []faultproxy.Rule{{Op: "CompleteMultipartUpload", Kind: faultproxy.ResetResponse, Times: 3}}},
		{"create-answer-lost", large, []faultproxy.Rule{{Op: "CreateMultipartUpload", Kind: faultproxy.ResetResponse, Times: 2}}},
		{"put-stalls", small, []faultproxy.Rule{{Op: "PutObject", Kind: faultproxy.Stall, Times: 1, Delay: time.Minute}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := e.fs
			if tc.name == "put-stalls" {
				fs = newFaultEnvShare(t, e, time.Second)
			}
			e.proxy.SetRules(tc.rules...)
			name := fmt.Sprintf("/f%d", i)
			u, err := fs.Create(t.Context(), name, storage.CreateOptions{User: "demo", Protocol: "sftp", TransferID: fmt.Sprintf("tx-%d", i)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := u.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := u.Close(); err != nil {
				t.Fatalf("Close: %v (proxy %+v)", err, e.proxy.Stats())
			}
			e.proxy.SetRules()
			mustEqual(t, "object", getRaw(t, e.raw, e.srv.Bucket, "home"+name), tc.data)
			if n := e.pending(t); n != 0 {
				t.Errorf("%d multipart uploads pending", n)
			}
			t.Logf("%s: committed in %s; proxy %+v", tc.name, time.Since(start).Round(time.Millisecond), e.proxy.Stats().ByRule)
		})
	}
}

// newFaultEnvShare is e's store with another stall timeout.
func newFaultEnvShare(t *testing.T, e *faultEnv, stall time.Duration) storage.FS {
	t.Helper()
	client, err := NewClient(t.Context(), ClientConfig{Endpoint: e.proxy.URL, Region: e.srv.Region, PathStyle: true,
		AccessKey: e.srv.AccessKey, Secret: e.srv.Secret, StallTimeout: stall})
	if err != nil {
		t.Fatal(err)
	}
	return newStore(t, client, Config{Bucket: e.srv.Bucket, Concurrency: 2}).Home("", "home")
}

// An abort that S3 refuses (503 on every attempt the SDK makes, twice over) is tried again
// until it lands: a failed upload leaves no pending multipart upload behind.
func TestAbortOutlastsFailures(t *testing.T) {
	e := newFaultEnv(t, 0)
	u, err := e.fs.Create(t.Context(), "/big", storage.CreateOptions{TransferID: "tx-abort"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Write(randBytes(t, 2*testPartSize+1)); err != nil {
		t.Fatal(err)
	}
	e.proxy.SetRules(faultproxy.Rule{Op: "AbortMultipartUpload", Kind: faultproxy.SlowDown, Times: 6})
	start := time.Now()
	_ = u.Abort(fmt.Errorf("client went away"))
	if n := e.pending(t); n != 0 {
		t.Errorf("%d multipart uploads pending after Abort", n)
	}
	if s := e.proxy.Stats(); s.ByRule["slowdown"] != 6 {
		t.Errorf("proxy %+v", s)
	}
	t.Logf("aborted in %s through 6 SlowDowns", time.Since(start).Round(time.Millisecond))
}

// A download keeps its bytes exact through resets and stalls mid-body: the reader resumes with
// a ranged GET pinned to the object's ETag.
func TestDownloadThroughBrokenBodies(t *testing.T) {
	e := newFaultEnv(t, time.Second)
	data := randBytes(t, 3<<20)
	put(t, e.fs, "/d", data)
	e.proxy.SetRules(
		faultproxy.Rule{Op: "GetObject", Kind: faultproxy.ResetResponse, Times: 2},
		faultproxy.Rule{Op: "GetObject", Kind: faultproxy.StallBody, Times: 1, Delay: time.Minute},
		faultproxy.Rule{Op: "GetObject", Kind: faultproxy.SlowDown, Times: 1},
	)
	mustEqual(t, "download", get(t, e.fs, "/d"), data)
	if s := e.proxy.Stats(); s.Faults != 4 {
		t.Errorf("proxy %+v, want 4 faults", s)
	}
}

func getRaw(t *testing.T, c *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b := make([]byte, 0, aws.ToInt64(out.ContentLength))
	buf := make([]byte, 64<<10)
	for {
		n, err := out.Body.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			break
		}
	}
	return b
}
