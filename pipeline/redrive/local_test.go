package redrive_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/bus"
	"github.com/ferrygw/ferry/pipeline/redrive"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

// flaky is a bus target that fails while failing is set, then delivers to next.
type flaky struct {
	failing atomic.Bool
	next    bus.Target
}

func (f *flaky) Deliver(ctx context.Context, ev []byte) error {
	if f.failing.Load() {
		return errors.New("target down")
	}
	return f.next.Deliver(ctx, ev)
}

// TestLocalRedriveExactlyOnce: on the embedded bus, an S3 event whose transform target failed
// and a File Processed event whose notify target failed are dead-lettered; once the targets
// recover, redrive sends both back (a dry run first changes nothing), and every file is
// processed and announced exactly once — even when the same events are sent back again.
func TestLocalRedriveExactlyOnce(t *testing.T) {
	p := newPipeline(t)
	dir := t.TempDir()
	b, err := bus.Open(dir, bus.Config{InboxInterval: 20 * time.Millisecond}, logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	p.emitted.next = b
	transformT, notifyT := &flaky{next: p.transform}, &flaky{next: p.notify}
	retry := bus.RetryPolicy{MaxAttempts: 2, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	for _, r := range []bus.Rule{
		{Name: "transform", Pattern: `{"source":["aws.s3"],"detail-type":["Object Created"]}`, Target: transformT, Retry: retry},
		{Name: "notify", Pattern: `{"source":["ferry.pipeline"]}`, Target: notifyT, Retry: retry},
	} {
		if err := b.AddRule(r); err != nil {
			t.Fatal(err)
		}
	}
	ctx := testCtx(t)
	deadLetters := func(rules ...string) int {
		dls, err := bus.DeadLetters(dir, rules...)
		if err != nil {
			t.Fatal(err)
		}
		return len(dls)
	}

	// SNS is down: a.csv is processed, its notice dead-lettered.
	notifyT.failing.Store(true)
	if err := b.PutRaw(ctx, p.upload(t, "incoming/ana/a.csv", "id\n1\n")); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 10*time.Second, "the notice's dead letter", func() bool { return deadLetters("notify") == 1 })
	// The transform is down: b.csv's S3 event is dead-lettered.
	transformT.failing.Store(true)
	bEvent := p.upload(t, "incoming/ana/b.csv", "id\n2\n")
	if err := b.PutRaw(ctx, bEvent); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 10*time.Second, "the S3 event's dead letter", func() bool { return deadLetters("transform") == 1 })
	transformT.failing.Store(false)
	notifyT.failing.Store(false)

	l := redrive.Local{Dir: dir}
	var listed []redrive.Result
	n, err := l.Redrive(true, func(r redrive.Result) { listed = append(listed, r) })
	if err != nil || n != 2 || len(listed) != 2 || deadLetters() != 2 {
		t.Fatalf("dry run: %d to redrive, %d listed, %d dead letters left: %v", n, len(listed), deadLetters(), err)
	}
	if d := listed[0].Describe(); listed[0].From != "dead-letter/notify" || !strings.Contains(d, `"File Processed" demo: incoming/ana/a.csv`) ||
		listed[0].LastError != "target down" {
		t.Errorf("first dead letter %s %q (%s)", listed[0].From, d, listed[0].LastError)
	}
	if d := listed[1].Describe(); !strings.Contains(d, `aws.s3 "Object Created" s3://`+p.srv.Bucket+"/incoming/ana/b.csv") {
		t.Errorf("second dead letter %q", d)
	}
	if got := p.sent.all(); len(got) != 0 {
		t.Fatalf("%d notices before the redrive", len(got))
	}

	n, err = l.Redrive(false, func(redrive.Result) {})
	if err != nil || n != 2 || deadLetters() != 0 {
		t.Fatalf("redrive: %d, %v; %d dead letters left", n, err, deadLetters())
	}
	taken, running, err := l.Wait(ctx, 10*time.Millisecond)
	if err != nil || !taken || !running {
		t.Fatalf("wait: taken %v running %v %v", taken, running, err)
	}
	testtool.Eventually(t, 10*time.Second, "both notices", func() bool { return len(p.sent.all()) == 2 })

	// The same events again (a second redrive of copies, a redelivery): nothing more happens.
	if _, err := bus.Enqueue(dir, bEvent, listed[0].Event); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 5*time.Second, "the inbox to drain", func() bool { n, _ := bus.Pending(dir); return n == 0 })
	time.Sleep(300 * time.Millisecond) // a duplicate would land now
	got := p.sent.all()
	if len(got) != 2 || deadLetters() != 0 {
		t.Fatalf("%d notices, %d dead letters: %+v", len(got), deadLetters(), got)
	}
	subjects := got[0].Subject + " | " + got[1].Subject
	if !strings.Contains(subjects, "Processed: a.csv from ana") || !strings.Contains(subjects, "Processed: b.csv from ana") {
		t.Errorf("notices %s", subjects)
	}
	if outs := p.outputs(t); strings.Join(outs, " ") != "processed/ana/a.jsonl processed/ana/b.jsonl" {
		t.Errorf("outputs %q", outs)
	}
	if n := p.emitted.count(); n != 2 {
		t.Errorf("%d pipeline events, want one per file", n)
	}
}

// With no bus running, redrive queues the events in the inbox; the next bus to open takes them.
func TestLocalRedriveWhileStopped(t *testing.T) {
	p := newPipeline(t)
	dir := t.TempDir()
	b, err := bus.Open(dir, bus.Config{InboxInterval: 20 * time.Millisecond}, logger())
	if err != nil {
		t.Fatal(err)
	}
	down := &flaky{next: p.transform}
	down.failing.Store(true)
	if err := b.AddRule(bus.Rule{Name: "transform", Pattern: `{"source":["aws.s3"]}`, Target: down,
		Retry: bus.RetryPolicy{MaxAttempts: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := b.PutRaw(testCtx(t), p.upload(t, "incoming/ana/c.csv", "id\n3\n")); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 10*time.Second, "the dead letter", func() bool { dls, _ := bus.DeadLetters(dir); return len(dls) == 1 })
	if err := b.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}

	l := redrive.Local{Dir: dir}
	if n, err := l.Redrive(false, func(redrive.Result) {}); n != 1 || err != nil {
		t.Fatalf("redrive %d %v", n, err)
	}
	taken, running, err := l.Wait(testCtx(t), 10*time.Millisecond)
	if err != nil || taken || running {
		t.Fatalf("wait with no bus: taken %v running %v %v", taken, running, err)
	}
	if n, _ := bus.Pending(dir); n != 1 {
		t.Fatalf("%d events in the inbox", n)
	}

	b, err = bus.Open(dir, bus.Config{InboxInterval: 20 * time.Millisecond}, logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if err := b.AddRule(bus.Rule{Name: "transform", Pattern: `{"source":["aws.s3"]}`, Target: p.transform}); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 10*time.Second, "c.csv's output", func() bool { return len(p.outputs(t)) == 1 })
}
