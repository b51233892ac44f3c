package s3server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

const (
	testKey    = "ferry"
	testSecret = "ferrysecret"
	testBucket = "ferry"
)

// harness is a Server on 127.0.0.1:0 over a temp directory, recording every change.
type harness struct {
	t       *testing.T
	srv     *Server
	url     string
	dir     string
	client  *s3.Client
	mu      sync.Mutex
	changes []Change
	hookErr error // returned by OnChange when set
}

func newHarness(t *testing.T, mod ...func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir()}
	cfg := Config{
		DataDir: h.dir, AccessKey: testKey, Secret: testSecret, Region: "us-east-1",
		Buckets: []string{testBucket},
		OnChange: func(ctx context.Context, c Change) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.hookErr != nil {
				return h.hookErr
			}
			h.changes = append(h.changes, c)
			return nil
		},
	}
	for _, m := range mod {
		m(&cfg)
	}
	h.start(cfg)
	return h
}

func (h *harness) start(cfg Config) {
	t := h.t
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	h.srv, h.url = srv, "http://"+l.Addr().String()
	h.client = newClient(h.url, testKey, testSecret)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
}

func newClient(url, key, secret string, opts ...func(*s3.Options)) *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(url),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(key, secret, ""),
		// Servers that send no response checksum would log a warning on every GET otherwise.
		DisableLogOutputChecksumValidationSkipped: true,
		// What config.LoadDefaultConfig gives the gateway's client: CRC32 on every upload
		// (a header over HTTP, an aws-chunked trailer over HTTPS).
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
		HTTPClient:                 &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}, opts...)
}

func (h *harness) takeChanges() []Change {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.changes
	h.changes = nil
	return c
}

func (h *harness) put(key, body string) *s3.PutObjectOutput {
	h.t.Helper()
	out, err := h.client.PutObject(h.t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String(key), Body: strings.NewReader(body),
	})
	if err != nil {
		h.t.Fatalf("PutObject %q: %v", key, err)
	}
	return out
}

func (h *harness) get(key string) string {
	h.t.Helper()
	out, err := h.client.GetObject(h.t.Context(), &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		h.t.Fatalf("GetObject %q: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		h.t.Fatalf("read %q: %v", key, err)
	}
	return string(b)
}

// tmpEmpty fails unless the server's temp directory is empty: no write leaves anything behind.
func (h *harness) tmpEmpty() {
	h.t.Helper()
	ents, err := os.ReadDir(h.dir + "/tmp")
	if err != nil {
		h.t.Fatal(err)
	}
	for _, e := range ents {
		h.t.Errorf("left in tmp/: %s", e.Name())
	}
}

// errCode is the S3 error code of err ("" if none).
func errCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// httpStatus is the HTTP status of a failed SDK call (0 if none).
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
