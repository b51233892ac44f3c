package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ferrygw/ferry/pipeline/bus"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

func s3Event(t *testing.T, key string) []byte {
	t.Helper()
	ev, err := event.NewObjectCreated(event.S3Change{Account: "000000000000", Region: "us-east-1", Bucket: "ferry", Key: key,
		Size: 3, ETag: "e", Sequencer: "01", Requester: "ferry", Reason: event.ReasonPutObject})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRedriveLocal: `ferry redrive` on the embedded default's bus folder — a dry run lists the
// dead letters and changes nothing; the real run hands them to the running bus, which delivers
// them to the rule that had given up.
func TestRedriveLocal(t *testing.T) {
	dir := t.TempDir()
	b, err := bus.Open(dir, bus.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	down := bus.TargetFunc(func(context.Context, []byte) error { return errors.New("webhook: 503 Service Unavailable") })
	if err := b.AddRule(bus.Rule{Name: "transform", Pattern: `{"source":["aws.s3"]}`, Target: down, Retry: bus.RetryPolicy{MaxAttempts: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := b.PutRaw(context.Background(), s3Event(t, "incoming/demo/report.csv")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if dls, _ := bus.DeadLetters(dir); len(dls) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter")
		}
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	r := ferry(t, "", "redrive", "--dir", dir, "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, `would redrive  dead-letter/transform  `) ||
		!strings.Contains(r.stdout, `aws.s3 "Object Created" s3://ferry/incoming/demo/report.csv  (failed with: webhook: 503 Service Unavailable)`) ||
		!strings.Contains(r.stdout, "would redrive 1 event(s)") {
		t.Fatalf("dry run = %+v", r)
	}
	if dls, _ := bus.DeadLetters(dir); len(dls) != 1 {
		t.Fatal("the dry run changed the dead letters")
	}

	// ferry serve is running again (the same rule, its target now working).
	b, err = bus.Open(dir, bus.Config{InboxInterval: 20 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	var mu sync.Mutex
	var got []string
	if err := b.AddRule(bus.Rule{Name: "transform", Pattern: `{"source":["aws.s3"]}`, Target: bus.TargetFunc(func(_ context.Context, ev []byte) error {
		e, err := event.DecodeS3(ev)
		if err != nil {
			return err
		}
		mu.Lock()
		got = append(got, e.Detail.Object.Key)
		mu.Unlock()
		return nil
	})}); err != nil {
		t.Fatal(err)
	}
	r = ferry(t, "", "redrive", "--dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "redriven 1 event(s)") || !strings.Contains(r.stdout, "the running ferry serve took them for delivery") {
		t.Fatalf("redrive = %+v", r)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the redriven event was not delivered")
		}
	}
	if dls, _ := bus.DeadLetters(dir); len(dls) != 0 {
		t.Errorf("%d dead letters left", len(dls))
	}
	if r := ferry(t, "", "redrive", "--dir", dir); r.code != 0 || !strings.Contains(r.stdout, "redriven 0 event(s)") {
		t.Errorf("nothing left to redrive = %+v", r)
	}
	if r := ferry(t, "", "redrive", "--dir", dir+"/nope"); r.code != 1 || !strings.Contains(r.stderr, "event bus folder") {
		t.Errorf("a missing folder = %+v", r)
	}
}

// TestRedriveQueues: `ferry redrive --queue` against SQS and EventBridge endpoints (moto), with
// the SDK's standard configuration (AWS_ENDPOINT_URL, credentials from the environment).
func TestRedriveQueues(t *testing.T) {
	moto := testtool.Moto(t)
	t.Setenv("AWS_ENDPOINT_URL", moto)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	c := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(moto),
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", "")})
	q, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String("ferry-notify-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: q.QueueUrl,
		MessageBody: aws.String(string(s3Event(t, "incoming/demo/late.csv")))}); err != nil {
		t.Fatal(err)
	}
	r := ferry(t, "", "redrive", "--queue", "ferry-notify-dlq", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "would redrive  "+aws.ToString(q.QueueUrl)) || !strings.Contains(r.stdout, "s3://ferry/incoming/demo/late.csv") {
		t.Fatalf("dry run = %+v", r)
	}
	if !strings.Contains(r.stdout, "would redrive 1 event(s) from 1 queue(s)") {
		t.Errorf("dry run count = %+v", r)
	}
	r = ferry(t, "", "redrive", "--queue", "ferry-notify-dlq")
	if r.code != 0 || !strings.Contains(r.stdout, "redriven 1 event(s) from 1 queue(s)") {
		t.Fatalf("redrive = %+v", r)
	}
	if r := ferry(t, "", "redrive", "--queue", "no-such-queue"); r.code != 1 || !strings.Contains(r.stderr, "no-such-queue") {
		t.Errorf("missing queue = %+v", r)
	}
}
