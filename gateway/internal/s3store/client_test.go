package s3store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// headerRecorder records the signing headers of each request and then sends it on (next) or
// fails it without touching the network (next == nil).
type headerRecorder struct {
	next *http.Client
	mu   sync.Mutex
	seen []http.Header
}

var errNoNetwork = errors.New("test transport: not sent")

func (h *headerRecorder) Do(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.seen = append(h.seen, r.Header.Clone())
	h.mu.Unlock()
	if h.next == nil {
		return nil, errNoNetwork
	}
	return h.next.Do(r)
}

func (h *headerRecorder) last(t *testing.T) http.Header {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) == 0 {
		t.Fatal("no request sent")
	}
	return h.seen[len(h.seen)-1]
}

// TestUnsignedPayloadOnLoopback: bodies to a loopback HTTP endpoint are signed UNSIGNED-PAYLOAD
// but still carry a CRC32 the server checks; other endpoints keep the SDK's behaviour.
func TestUnsignedPayloadOnLoopback(t *testing.T) {
	srv := s3test.Start(t)
	rec := &headerRecorder{next: http.DefaultClient}
	client := s3.New(srv.Client().Options(), asNewClient, UnsignedPayloadOnLoopback, func(o *s3.Options) { o.HTTPClient = rec })
	ctx := t.Context()
	body := randBytes(t, 100<<10)
	key := "unsigned/obj"
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &srv.Bucket, Key: &key, Body: bytes.NewReader(body),
	}); err != nil {
		t.Fatal(err)
	}
	h := rec.last(t)
	if got := h.Get("X-Amz-Content-Sha256"); got != "UNSIGNED-PAYLOAD" {
		t.Errorf("loopback PutObject payload hash = %q, want UNSIGNED-PAYLOAD", got)
	}
	if h.Get("X-Amz-Checksum-Crc32") == "" {
		t.Errorf("loopback PutObject sent no CRC32 checksum: %v", h)
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &srv.Bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	got := new(bytes.Buffer)
	_, _ = got.ReadFrom(out.Body)
	out.Body.Close()
	mustEqual(t, "read back", got.Bytes(), body)

	// The checksum is what protects the body now: a wrong one must be refused.
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &srv.Bucket, Key: aws.String("unsigned/bad"), Body: bytes.NewReader(body),
		ChecksumCRC32: aws.String("AAAAAA=="),
	}); err == nil {
		t.Error("PutObject with a wrong CRC32 succeeded; the server does not check it")
	}

	sum := sha256.Sum256(body)
	tests := []struct {
		endpoint string
		want     string
	}{
		{"http://s3.example.test:9000", hex.EncodeToString(sum[:])}, // plain HTTP elsewhere: signed
		{"http://10.1.2.3:9000", hex.EncodeToString(sum[:])},
		{"https://127.0.0.1:9000", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}, // the SDK's HTTPS default
		{"http://localhost:9000", "UNSIGNED-PAYLOAD"},
		{"http://[::1]:9000", "UNSIGNED-PAYLOAD"},
	}
	for _, tt := range tests {
		rec := &headerRecorder{}
		c := s3.New(srv.Client().Options(), asNewClient, UnsignedPayloadOnLoopback, func(o *s3.Options) {
			o.HTTPClient = rec
			o.BaseEndpoint = aws.String(tt.endpoint)
			o.RetryMaxAttempts = 1
		})
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &srv.Bucket, Key: &key, Body: bytes.NewReader(body)})
		if !errors.Is(err, errNoNetwork) {
			t.Fatalf("%s: PutObject error %v, want the test transport's", tt.endpoint, err)
		}
		if got := rec.last(t).Get("X-Amz-Content-Sha256"); got != tt.want {
			t.Errorf("%s: payload hash %q, want %q", tt.endpoint, got, tt.want)
		}
	}
}

// asNewClient sets what config.LoadDefaultConfig (so NewClient) sets and s3test's client lacks.
func asNewClient(o *s3.Options) {
	o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenSupported
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.9.9.9": true, "::1": true, "[::1]": true, "localhost": true, "LOCALHOST": true,
		"s3.localhost": true, "10.0.0.1": false, "s3.amazonaws.com": false, "": false, "localhost.example.com": false,
	} {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestClientReusesConnections: a burst of concurrent requests, wider than the SDK's default
// idle pool (10 per host), goes out again on the same connections; with the default, every
// request past the tenth opened a connection of its own in each burst (on AWS, a TLS handshake).
// The server holds each request until the whole burst has arrived, so the requests are in flight
// at once; what it answers does not matter here (a HEAD's 200), how many connections it saw does.
func TestClientReusesConnections(t *testing.T) {
	const width = 32
	var (
		accepted atomic.Int64
		mu       sync.Mutex
		arrived  int
		all      = make(chan struct{})
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		wait := all
		if arrived++; arrived%width == 0 { // the burst is in: release it, and hold the next
			close(all)
			all = make(chan struct{})
		}
		mu.Unlock()
		select {
		case <-wait:
		case <-time.After(10 * time.Second):
		}
		w.Header().Set("Content-Length", "0")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	client, err := NewClient(context.Background(), ClientConfig{Endpoint: srv.URL, Region: "us-east-1",
		PathStyle: true, AccessKey: "test", Secret: "test-secret"})
	if err != nil {
		t.Fatal(err)
	}
	burst := func() {
		var wg sync.WaitGroup
		for i := range width {
			wg.Go(func() {
				if _, err := client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("b"),
					Key: aws.String(fmt.Sprintf("k%d", i))}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	burst()
	first := accepted.Load()
	burst()
	if again := accepted.Load() - first; first != width || again != 0 {
		t.Errorf("first burst opened %d connections (want %d), the second %d more (want 0)", first, width, again)
	}
}
