package redrive_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/handler"
	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/notify"
	"github.com/ferrygw/ferry/pipeline/route"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func logger() *slog.Logger {
	if os.Getenv("REDRIVE_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// pipeline is the transform and notify handlers over versitygw with the shipped routes.
type pipeline struct {
	srv       *s3test.Server
	s3        *s3.Client
	transform *handler.Transform
	notify    *handler.Notify
	sent      *published
	emitted   *emitted
}

// published records notifications; it fails while failing is set (SNS down, then back).
type published struct {
	failing atomic.Bool
	mu      sync.Mutex
	got     []notify.Notification
}

func (p *published) Publish(_ context.Context, n notify.Notification) error {
	if p.failing.Load() {
		return errors.New("sns: service unavailable")
	}
	if _, err := n.Wire(); err != nil {
		return err
	}
	p.mu.Lock()
	p.got = append(p.got, n)
	p.mu.Unlock()
	return nil
}

func (p *published) all() []notify.Notification {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]notify.Notification(nil), p.got...)
}

// emitted records the transform's pipeline events and passes them on to next, when set.
type emitted struct {
	mu   sync.Mutex
	evs  []event.Envelope
	next handler.Emitter
}

func (e *emitted) Put(ctx context.Context, evs ...event.Envelope) error {
	if e.next != nil {
		if err := e.next.Put(ctx, evs...); err != nil {
			return err
		}
	}
	e.mu.Lock()
	e.evs = append(e.evs, evs...)
	e.mu.Unlock()
	return nil
}

func (e *emitted) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.evs)
}

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	srv := s3test.Start(t)
	routes, err := route.Load(filepath.Join("..", "..", "configs", "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline{srv: srv, s3: srv.Client(), sent: &published{}, emitted: &emitted{}}
	led := ledger.New(p.s3, srv.Bucket, "")
	p.transform, err = handler.NewTransform(handler.TransformConfig{S3: p.s3, Routes: routes, Ledger: led,
		Events: p.emitted, Log: logger(), Account: "111122223333", Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	p.notify, err = handler.NewNotify(handler.NotifyConfig{Publisher: p.sent, Ledger: led, Log: logger(), Datasets: routes.Datasets})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// upload puts a CSV and returns S3's Object Created event for it.
func (p *pipeline) upload(t *testing.T, key, body string) []byte {
	t.Helper()
	out, err := p.s3.PutObject(testCtx(t), &s3.PutObjectInput{Bucket: aws.String(p.srv.Bucket), Key: aws.String(key), Body: strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := event.NewObjectCreated(event.S3Change{Account: "111122223333", Region: "us-east-1", Bucket: p.srv.Bucket, Key: key,
		Size: int64(len(body)), ETag: strings.Trim(aws.ToString(out.ETag), `"`), Sequencer: "0000000000000001",
		Requester: "111122223333", Reason: event.ReasonPutObject})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// outputs lists the processed/ keys.
func (p *pipeline) outputs(t *testing.T) []string {
	t.Helper()
	out, err := p.s3.ListObjectsV2(testCtx(t), &s3.ListObjectsV2Input{Bucket: aws.String(p.srv.Bucket), Prefix: aws.String("processed/")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}
