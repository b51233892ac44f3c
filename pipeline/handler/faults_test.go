package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/internal/fakeaws"
	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/notify"
	"github.com/ferrygw/ferry/pipeline/route"
	"github.com/ferrygw/ferry/pipeline/testtool/faultproxy"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// faultPipeline is the transform and notify handlers as the Lambdas run them — S3 through a
// fault-injecting proxy to versitygw, PutEvents and SNS Publish through another to endpoints
// that speak their wire formats — and a driver that delivers events at least once, as
// EventBridge and Lambda do: again after every error, and once more after success.
type faultPipeline struct {
	srv       *s3test.Server
	raw       *s3.Client // versitygw directly, to judge
	s3p, awsp *faultproxy.Proxy
	fake      *fakeaws.Server
	th        *Transform
	nh        *Notify
	log       *bytes.Buffer

	mu         sync.Mutex
	deliveries int // Handle calls
	failures   int // Handle calls that returned an error (retried)
}

func newFaultPipeline(t *testing.T) *faultPipeline {
	t.Helper()
	p := &faultPipeline{srv: s3test.Start(t), fake: fakeaws.Start(t), log: &bytes.Buffer{}}
	p.raw = p.srv.Client()
	p.s3p = faultproxy.Start(t, p.srv.Endpoint, 11)
	p.awsp = faultproxy.Start(t, p.fake.URL, 12)
	creds := credentials.NewStaticCredentialsProvider(p.srv.AccessKey, p.srv.Secret, "")
	s3c := s3.New(s3.Options{Region: p.srv.Region, BaseEndpoint: aws.String(p.s3p.URL), UsePathStyle: true, Credentials: creds})
	eb := awseventbridge.New(awseventbridge.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.awsp.URL), Credentials: creds})
	sn := sns.New(sns.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.awsp.URL), Credentials: creds})
	routes, err := route.Load("testdata/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	led := ledger.New(s3c, p.srv.Bucket, "")
	led.Skew = 0 // a dead delivery's claim is taken over as soon as its deadline passes
	logger := slogJSON(&syncWriter{w: p.log})
	if p.th, err = NewTransform(TransformConfig{S3: s3c, Routes: routes, Ledger: led,
		Events: EventBridgeEmitter{API: eb}, Metrics: NewMetrics(&syncWriter{w: p.log}, "", "transform"), Log: logger,
		Account: "111122223333", Region: "us-east-1"}); err != nil {
		t.Fatal(err)
	}
	pub, err := notify.NewSNSPublisher(sn, defaultTopic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.nh, err = NewNotify(NotifyConfig{Publisher: pub, Ledger: led, Log: logger, Datasets: routes.Datasets}); err != nil {
		t.Fatal(err)
	}
	return p
}

// deliver hands ev to handle until it succeeds (at most 12 times), then once more: what
// at-least-once delivery does in the worst case. Each delivery has a short deadline, as a
// Lambda invocation does, so a claim left by a delivery that died goes stale quickly.
func (p *faultPipeline) deliver(t *testing.T, handle func(context.Context, json.RawMessage) error, ev []byte, dup bool) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := handle(ctx, ev)
		cancel()
		p.mu.Lock()
		p.deliveries++
		if err != nil {
			p.failures++
		}
		p.mu.Unlock()
		if err == nil {
			break
		}
		if attempt == 12 {
			t.Fatalf("delivery still failing after 12 attempts: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !dup {
		p.deliver(t, handle, ev, true) // the duplicate EventBridge may send, itself retried
	}
}

// TestPipelineThroughFaults sends good and bad CSVs through both handlers while S3, EventBridge
// and SNS fail in every way the proxies and endpoints can: S3's 503/500, resets before and after
// S3 acted, latency; whole PutEvents calls throttled or failing, their answers lost after
// EventBridge accepted them (so File Processed arrives twice), SNS failing; and on chosen
// files, failures the SDK's retries cannot hide (writing an output, quarantining, marking the
// ledger done after publishing). Every event is delivered until it succeeds and then once more.
// Transient faults are retried through; each good file gets exactly one output and one
// notification, each bad one exactly one quarantined copy and one notification.
func TestPipelineThroughFaults(t *testing.T) {
	p := newFaultPipeline(t)
	type file struct{ key, body, want, tid string }
	var good, bad []file
	for i := range 12 {
		good = append(good, file{key: fmt.Sprintf("incoming/alice/sales-%02d.csv", i), tid: fmt.Sprintf("tx-good-%02d", i),
			body: fmt.Sprintf("id,name\n%d,ann\n%d,bob\n", i, i+100),
			want: fmt.Sprintf("{\"id\":\"%d\",\"name\":\"ann\"}\n{\"id\":\"%d\",\"name\":\"bob\"}\n", i, i+100)})
	}
	for i := range 4 {
		bad = append(bad, file{key: fmt.Sprintf("incoming/bob/poison-%02d.csv", i), tid: fmt.Sprintf("tx-bad-%02d", i),
			body: fmt.Sprintf("a,b\n1,2\n%d\n", i)})
	}
	ledgerDone := func(kind string) func(faultproxy.Request) bool {
		return func(r faultproxy.Request) bool {
			return strings.HasPrefix(r.Key, ledger.DefaultPrefix+kind) && r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Match") == ""
		}
	}
	// Targeted faults outlast the SDK's three attempts; the rated ones mostly do not.
	p.s3p.SetRules(
		faultproxy.Rule{Name: "output write fails", Op: "PutObject", Kind: faultproxy.InternalError, Times: 3,
			Match: func(r faultproxy.Request) bool { return strings.Contains(r.Key, "processed/alice/sales-03") }},
		faultproxy.Rule{Name: "quarantine copy fails", Op: "CopyObject", Kind: faultproxy.SlowDown, Times: 3,
			Match: func(r faultproxy.Request) bool { return strings.Contains(r.Key, "poison-01") }},
		faultproxy.Rule{Name: "ledger done lost (transform)", Op: "PutObject", Kind: faultproxy.InternalError, Times: 3,
			Match: func(r faultproxy.Request) bool { return ledgerDone("object/")(r) }},
		faultproxy.Rule{Name: "ledger done lost (notify)", Op: "PutObject", Kind: faultproxy.ResetRequest, Times: 3,
			Match: func(r faultproxy.Request) bool { return ledgerDone("notify/")(r) }},
		faultproxy.Rule{Kind: faultproxy.SlowDown, Rate: 0.04},
		faultproxy.Rule{Kind: faultproxy.InternalError, Rate: 0.03},
		faultproxy.Rule{Kind: faultproxy.ResetResponse, Rate: 0.03},
		faultproxy.Rule{Kind: faultproxy.ResetRequest, Rate: 0.02, Match: func(r faultproxy.Request) bool { return r.Size > 0 }},
		faultproxy.Rule{Kind: faultproxy.Latency, Rate: 0.05, Delay: 50 * time.Millisecond},
	)
	p.awsp.SetRules(
		faultproxy.Rule{Name: "PutEvents answer lost", Op: "PutEvents", Kind: faultproxy.ResetResponse, Times: 3},
		faultproxy.Rule{Name: "PutEvents down", Op: "PutEvents", Kind: faultproxy.SlowDown, Times: 3},
		faultproxy.Rule{Name: "SNS down", Op: "Publish", Kind: faultproxy.InternalError, Times: 3},
		faultproxy.Rule{Kind: faultproxy.InternalError, Rate: 0.05},
	)
	for i, f := range append(append([]file{}, good...), bad...) {
		if i == 8 { // once the lost answers above have made their duplicates
			p.fake.FailEvents(4, "ThrottlingException")
		}
		out, err := p.raw.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &p.srv.Bucket, Key: aws.String(f.key),
			Body: strings.NewReader(f.body), Metadata: map[string]string{MetaTransferID: f.tid}})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := event.NewObjectCreated(event.S3Change{Account: "111122223333", Region: "us-east-1", Bucket: p.srv.Bucket,
			Key: f.key, Size: int64(len(f.body)), ETag: aws.ToString(out.ETag), Sequencer: fmt.Sprintf("%016X", time.Now().UnixNano()),
			Requester: "111122223333", SourceIPAddress: "127.0.0.1", Reason: event.ReasonPutObject})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(ev)
		p.deliver(t, p.th.Handle, raw, false)
	}
	// EventBridge delivers what it accepted — duplicates included — to the notify function.
	entries := p.fake.Events()
	for _, en := range entries {
		raw, _ := json.Marshal(map[string]any{"version": "0", "id": event.NewID(), "detail-type": en.DetailType, "source": en.Source,
			"account": "111122223333", "time": time.Now().UTC().Format(time.RFC3339), "region": "us-east-1",
			"resources": en.Resources, "detail": json.RawMessage(en.Detail)})
		p.deliver(t, p.nh.Handle, raw, false)
	}

	// Judge against versitygw and the endpoints.
	ctx := context.Background()
	keys := map[string]bool{}
	pg := s3.NewListObjectsV2Paginator(p.raw, &s3.ListObjectsV2Input{Bucket: &p.srv.Bucket})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			keys[aws.ToString(o.Key)] = true
		}
	}
	msgs := p.fake.SNS()
	notifications := func(key string) int {
		n := 0
		for _, m := range msgs {
			if strings.Contains(m.Message, key) {
				n++
			}
		}
		return n
	}
	events := map[string]int{} // File Processed/Rejected entries by input key
	for _, en := range entries {
		var d event.FileDetail
		if err := json.Unmarshal([]byte(en.Detail), &d); err != nil {
			t.Fatal(err)
		}
		for _, f := range d.Files {
			events[f.Key]++
		}
	}
	for _, f := range good {
		out := strings.Replace(strings.Replace(f.key, "incoming/", "processed/", 1), ".csv", ".jsonl", 1)
		if got := getString(t, p.raw, p.srv.Bucket, out); got != f.want {
			t.Errorf("%s: output %s = %q, want %q", f.key, out, got, f.want)
		}
		if n := notifications(f.key); n != 1 {
			t.Errorf("%s: %d notifications, want exactly 1", f.key, n)
		}
	}
	for _, f := range bad {
		q := strings.Replace(f.key, "incoming/", "quarantine/", 1)
		if !keys[q] {
			t.Errorf("%s: not quarantined", f.key)
		}
		if n := notifications(f.key); n != 1 {
			t.Errorf("%s: %d notifications, want exactly 1", f.key, n)
		}
	}
	for k := range keys {
		switch {
		case strings.HasPrefix(k, "incoming/"), strings.HasPrefix(k, ledger.DefaultPrefix):
		case strings.HasPrefix(k, "processed/alice/sales-") && strings.HasSuffix(k, ".jsonl"):
		case strings.HasPrefix(k, "quarantine/bob/poison-"):
		default:
			t.Errorf("unexpected object %s", k)
		}
	}
	if n := len(keys) - countPrefix(keys, ledger.DefaultPrefix); n != 2*len(good)+2*len(bad) {
		t.Errorf("%d objects outside the ledger, want %d inputs, outputs and quarantined copies", n, 2*len(good)+2*len(bad))
	}
	dupEvents := len(entries) - len(good) - len(bad)
	s3s, aws := p.s3p.Stats(), p.awsp.Stats()
	t.Logf("files: %d good, %d bad; %d Handle calls, %d returned an error and were delivered again", len(good), len(bad), p.deliveries, p.failures)
	t.Logf("S3 proxy: %d requests, %d faults (%s), %d SDK retries", s3s.Requests, s3s.Faults, formatRules(s3s.ByRule), s3s.Retries)
	t.Logf("AWS proxy: %d requests, %d faults (%s), %d SDK retries; fakeaws: %d PutEvents calls (4 throttled), %d Publish calls",
		aws.Requests, aws.Faults, formatRules(aws.ByRule), aws.Retries, p.fake.Calls("PutEvents"), p.fake.Calls("Publish"))
	t.Logf("File Processed/Rejected events accepted by EventBridge: %d (%d duplicates from lost answers and takeovers); SNS messages: %d",
		len(entries), dupEvents, len(msgs))
	if p.failures == 0 || dupEvents == 0 || s3s.ByRule["ledger done lost (transform)"] != 3 {
		t.Errorf("the faults did not bite: %d failed deliveries, %d duplicate events, rules %v", p.failures, dupEvents, s3s.ByRule)
	}
	if len(msgs) != len(good)+len(bad) {
		t.Errorf("%d SNS messages, want %d", len(msgs), len(good)+len(bad))
	}
	// One id from upload to notification: the transfer id is in the events, the notices and
	// every log line about a file, EMF included.
	for _, f := range good[:3] {
		if !strings.Contains(p.log.String(), `"transferId":"`+f.tid+`"`) {
			t.Errorf("no log line carries %s", f.tid)
		}
	}
	for _, m := range msgs {
		if !strings.Contains(m.Message, "tx-") {
			t.Errorf("notification without its transfer id: %s", m.Subject)
		}
	}
}

func countPrefix(keys map[string]bool, prefix string) int {
	n := 0
	for k := range keys {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

func formatRules(m map[string]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	return strings.Join(parts, ", ")
}

func getString(t *testing.T, c *s3.Client, bucket, key string) string {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return "<" + err.Error() + ">"
	}
	defer out.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(out.Body)
	return b.String()
}

// syncWriter serialises writes from the handlers' goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func slogJSON(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }
