package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/route"
	"github.com/ferrygw/ferry/pipeline/s3status"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// recorder is an Emitter that keeps what was published.
type recorder struct {
	mu     sync.Mutex
	events []event.Envelope
}

func (r *recorder) Put(_ context.Context, evs ...event.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, evs...)
	return nil
}

func (r *recorder) all() []event.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Envelope(nil), r.events...)
}

type env struct {
	t       *testing.T
	srv     *s3test.Server
	s3      *s3.Client
	bucket  string
	events  *recorder
	h       *Transform
	metrics *bytes.Buffer
	seq     int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := s3test.Start(t)
	cfg, err := route.Load("testdata/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, s3: srv.Client(), bucket: srv.Bucket, events: &recorder{}, metrics: &bytes.Buffer{}}
	h, err := NewTransform(TransformConfig{
		S3: e.s3, Routes: cfg, Ledger: ledger.New(e.s3, srv.Bucket, ""), Events: e.events,
		Metrics: NewMetrics(e.metrics, "", "transform"), Log: testLogger(t),
		Account: "111122223333", Region: "us-east-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	return e
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("HANDLER_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// put writes an object and returns its etag (unquoted).
func (e *env) put(key, body string, meta map[string]string) string {
	e.t.Helper()
	out, err := e.s3.PutObject(ctx(e.t), &s3.PutObjectInput{
		Bucket: aws.String(e.bucket), Key: aws.String(key), Body: strings.NewReader(body), Metadata: meta,
	})
	if err != nil {
		e.t.Fatalf("put %s: %v", key, err)
	}
	return strings.Trim(aws.ToString(out.ETag), `"`)
}

// copyObj copies src to dst (a rename's first half) and returns dst's etag.
func (e *env) copyObj(src, dst string) string {
	e.t.Helper()
	out, err := e.s3.CopyObject(ctx(e.t), &s3.CopyObjectInput{
		Bucket: aws.String(e.bucket), Key: aws.String(dst), CopySource: aws.String(e.bucket + "/" + src),
	})
	if err != nil {
		e.t.Fatalf("copy %s -> %s: %v", src, dst, err)
	}
	return strings.Trim(aws.ToString(out.CopyObjectResult.ETag), `"`)
}

// created builds S3's Object Created event for key from testdata/object-created.json.
func (e *env) created(key, etag string, size int, reason string) []byte {
	e.t.Helper()
	tpl, err := os.ReadFile("testdata/object-created.json")
	if err != nil {
		e.t.Fatal(err)
	}
	k, _ := json.Marshal(key)
	e.seq++
	s := strings.NewReplacer(`"KEY"`, string(k), "BUCKET", e.bucket, "ETAG", etag, "SIZE", fmt.Sprint(size),
		"REASON", reason, "617f08299329d189", fmt.Sprintf("%016X", e.seq)).Replace(string(tpl))
	if _, err := event.DecodeS3([]byte(s)); err != nil {
		e.t.Fatalf("testdata event: %v", err)
	}
	return []byte(s)
}

// upload puts key and returns its Object Created event.
func (e *env) upload(key, body string, meta map[string]string) []byte {
	etag := e.put(key, body, meta)
	return e.created(key, etag, len(body), event.ReasonPutObject)
}

func (e *env) handle(ev []byte) {
	e.t.Helper()
	if err := e.h.Handle(ctx(e.t), ev); err != nil {
		e.t.Fatalf("handle: %v", err)
	}
}

func (e *env) get(key string) (string, map[string]string, bool) {
	e.t.Helper()
	out, err := e.s3.GetObject(ctx(e.t), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if s3status.Is(err, 404) {
		return "", nil, false
	}
	if err != nil {
		e.t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b), out.Metadata, true
}

// keys lists the bucket's keys under prefix.
func (e *env) keys(prefix string) []string {
	e.t.Helper()
	out, err := e.s3.ListObjectsV2(ctx(e.t), &s3.ListObjectsV2Input{Bucket: aws.String(e.bucket), Prefix: aws.String(prefix)})
	if err != nil {
		e.t.Fatal(err)
	}
	var ks []string
	for _, o := range out.Contents {
		ks = append(ks, aws.ToString(o.Key))
	}
	return ks
}

func (e *env) fileEvents() []event.FileEvent {
	e.t.Helper()
	var out []event.FileEvent
	for _, env := range e.events.all() {
		raw, err := json.Marshal(env)
		if err != nil {
			e.t.Fatal(err)
		}
		fe, err := event.DecodeFile(raw)
		if err != nil {
			e.t.Fatalf("published event: %v", err)
		}
		out = append(out, fe)
	}
	return out
}
