package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/inspect"
	"github.com/ferrygw/ferry/pipeline/internal/fakeaws"
	"github.com/ferrygw/ferry/pipeline/internal/lambdaemu"
	"github.com/ferrygw/ferry/pipeline/testtool/faultproxy"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// buildBootstrap builds a Lambda main for the test host, as `make lambdas` does for arm64.
func buildBootstrap(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// TestBootstrapsUnderRuntimeAPI runs the real transform and notify binaries under a Lambda
// Runtime API emulator, against versitygw and local endpoints speaking EventBridge's JSON 1.1
// and SNS's query protocol: S3 event -> output object + PutEvents -> notify -> SNS Publish.
func TestBootstrapsUnderRuntimeAPI(t *testing.T) {
	srv := s3test.Start(t)
	fake := fakeaws.Start(t)
	transformBin := buildBootstrap(t, "github.com/ferrygw/ferry/pipeline/cmd/transform")
	notifyBin := buildBootstrap(t, "github.com/ferrygw/ferry/pipeline/cmd/notify")
	env := lambdaEnv(t, srv, srv.Endpoint, fake.URL)
	tEmu, nEmu := lambdaemu.New(t), lambdaemu.New(t)
	tProc := tEmu.Run(transformBin, env)
	nProc := nEmu.Run(notifyBin, env)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s3c := srv.Client()
	seq := 0
	upload := func(key, body string) []byte {
		out, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key), Body: strings.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		seq++
		ev, err := event.NewObjectCreated(event.S3Change{
			Account: "111122223333", Region: "us-east-1", Bucket: srv.Bucket, Key: key, Size: int64(len(body)),
			ETag: aws.ToString(out.ETag), Sequencer: strings.Repeat("0", 15) + string(rune('0'+seq)),
			Requester: "111122223333", SourceIPAddress: "127.0.0.1", Reason: event.ReasonPutObject,
		})
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	invoke := func(emu *lambdaemu.Emulator, payload []byte, wantErr bool) lambdaemu.Result {
		t.Helper()
		r, err := emu.Invoke(ctx, payload)
		if err != nil {
			t.Fatal(err)
		}
		if r.Err != wantErr {
			t.Fatalf("invocation %s: error %v (%s), want error %v", r.RequestID, r.Err, r.Payload, wantErr)
		}
		return r
	}

	good := upload("incoming/alice/sales.csv", "id,name\n1,ann\n2,bob\n")
	invoke(tEmu, good, false)
	invoke(tEmu, good, false) // redelivery
	invoke(tEmu, upload("incoming/bob/bad.csv", "a,b\n1\n"), false)
	if _, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String("processed/alice/sales.jsonl")}); err != nil {
		t.Errorf("output: %v", err)
	}
	if _, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String("quarantine/bob/bad.csv")}); err != nil {
		t.Errorf("quarantine: %v", err)
	}
	entries := fake.Events()
	if len(entries) != 2 || entries[0].DetailType != event.DetailTypeFileProcessed || entries[1].DetailType != event.DetailTypeFileRejected {
		t.Fatalf("PutEvents entries %+v", entries)
	}

	// EventBridge delivers each entry to the notify function as an event (twice: at least once).
	for i, en := range entries {
		if en.Source != event.SourcePipeline || en.EventBusName != "default" {
			t.Errorf("entry %d: %+v", i, en)
		}
		delivered, err := json.Marshal(map[string]any{
			"version": "0", "id": event.NewID(), "detail-type": en.DetailType, "source": en.Source,
			"account": "111122223333", "time": time.Now().UTC().Format(time.RFC3339), "region": "us-east-1",
			"resources": en.Resources, "detail": json.RawMessage(en.Detail),
		})
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			fake.FailSNS(100) // SNS down: the function reports an error, Lambda would retry
			invoke(nEmu, delivered, true)
			fake.FailSNS(0)
		}
		invoke(nEmu, delivered, false)
		invoke(nEmu, delivered, false)
	}
	msgs := fake.SNS()
	if len(msgs) != 2 {
		t.Fatalf("%d SNS messages, want 2: %+v", len(msgs), msgs)
	}
	if a := msgs[0].Attributes; a["dataset"] != "demo" || a["user"] != "alice" || a["status"] != "processed" {
		t.Errorf("processed message attributes %v", a)
	}
	if a := msgs[1].Attributes; a["status"] != "rejected" || a["user"] != "bob" || !strings.Contains(msgs[1].Protocols["email"], "quarantine/bob/bad.csv") {
		t.Errorf("rejected message %+v", msgs[1])
	}
	// Per-protocol messages, checked by the endpoint as SNS checks them.
	for _, m := range msgs {
		if m.MessageStructure != "json" || !strings.Contains(m.Protocols["default"], `"version":1`) || m.Protocols["sms"] == "" || m.Protocols["email"] == "" {
			t.Errorf("message %+v", m)
		}
	}
	if !strings.Contains(msgs[0].Protocols["email"], "Records:   2") || msgs[1].Subject != "[demo] Rejected: bad.csv (line 2) from bob" {
		t.Errorf("messages %+v", msgs)
	}

	// Logs are lambdacontext's JSON with the request id; metrics are EMF lines.
	logs := tProc.Output()
	if !strings.Contains(logs, `"requestId":"req-1"`) || !strings.Contains(logs, `"message":"transform: published"`) {
		t.Errorf("transform logs lack JSON lines with requestId:\n%s", logs)
	}
	if !strings.Contains(logs, `"CloudWatchMetrics"`) || !strings.Contains(logs, `"FilesRejected":1`) {
		t.Errorf("transform output lacks EMF metrics:\n%s", logs)
	}
	if !strings.Contains(nProc.Output(), `"requestId":"req-`) {
		t.Errorf("notify logs:\n%s", nProc.Output())
	}

	// What the real functions recorded answers `ferry status` and `ferry trace` from the bucket
	// alone, with SNS's message ids.
	in, err := inspect.New(inspect.Config{S3: s3c, Bucket: srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	files, err := in.Status(ctx, inspect.Query{Since: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, f := range files {
		states[f.Key] = f.Describe() + " " + f.MessageID
	}
	if states["incoming/alice/sales.csv"] != "processed (2 records), notified msg-1" || states["incoming/bob/bad.csv"] != "rejected (line 2), notified msg-2" {
		t.Errorf("status %v", states)
	}
	stories, err := in.Trace(ctx, "incoming/alice/sales.csv")
	if err != nil || len(stories) != 1 || stories[0].Notice == nil || stories[0].Notice.MessageID != "msg-1" ||
		stories[0].Outcome == nil || len(stories[0].Outcome.Outputs) != 1 {
		t.Errorf("trace: %v %+v", err, stories)
	}
}

// TestBootstrapsThroughFaults runs the real transform and notify binaries under the Runtime API
// emulator with S3 behind the fault proxy and EventBridge/SNS behind another: each invocation
// that reports an error is invoked again (Lambda's retries, then EventBridge's), and each event
// is invoked once more after it succeeded (at-least-once delivery). A good file yields one output
// and one notification, a poison file one quarantined copy and one notification, and the
// transfer id is in the functions' JSON log lines and EMF metrics.
func TestBootstrapsThroughFaults(t *testing.T) {
	srv := s3test.Start(t)
	fake := fakeaws.Start(t)
	s3p := faultproxy.Start(t, srv.Endpoint, 21)
	awsp := faultproxy.Start(t, fake.URL, 22)
	transformBin := buildBootstrap(t, "github.com/ferrygw/ferry/pipeline/cmd/transform")
	notifyBin := buildBootstrap(t, "github.com/ferrygw/ferry/pipeline/cmd/notify")
	env := lambdaEnv(t, srv, s3p.URL, awsp.URL)
	tEmu, nEmu := lambdaemu.New(t), lambdaemu.New(t)
	tEmu.Deadline, nEmu.Deadline = 20*time.Second, 20*time.Second
	tProc := tEmu.Run(transformBin, env)
	nProc := nEmu.Run(notifyBin, env)
	s3p.SetRules(
		faultproxy.Rule{Name: "output write fails", Op: "PutObject", Kind: faultproxy.InternalError, Times: 3,
			Match: func(r faultproxy.Request) bool { return strings.HasPrefix(r.Key, "processed/") }},
		faultproxy.Rule{Name: "quarantine fails", Op: "CopyObject", Kind: faultproxy.SlowDown, Times: 3},
		faultproxy.Rule{Kind: faultproxy.SlowDown, Rate: 0.05},
		faultproxy.Rule{Kind: faultproxy.ResetResponse, Rate: 0.03},
		faultproxy.Rule{Kind: faultproxy.InternalError, Rate: 0.03},
	)
	awsp.SetRules(
		faultproxy.Rule{Name: "PutEvents answer lost", Op: "PutEvents", Kind: faultproxy.ResetResponse, Times: 1},
		faultproxy.Rule{Name: "SNS down", Op: "Publish", Kind: faultproxy.InternalError, Times: 3},
	)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s3c := srv.Client()
	invocations, errs := 0, 0
	deliver := func(emu *lambdaemu.Emulator, payload []byte) {
		t.Helper()
		for round := 0; round < 2; round++ { // until it succeeds, then once more
			for attempt := 1; ; attempt++ {
				r, err := emu.Invoke(ctx, payload)
				if err != nil {
					t.Fatal(err)
				}
				invocations++
				if !r.Err {
					break
				}
				errs++
				if attempt == 10 {
					t.Fatalf("invocation still failing after 10 attempts: %s", r.Payload)
				}
			}
		}
	}
	files := map[string]string{ // key -> transfer id
		"incoming/alice/orders.csv": "tx-orders", "incoming/alice/stock.csv": "tx-stock", "incoming/bob/broken.csv": "tx-broken",
	}
	bodies := map[string]string{
		"incoming/alice/orders.csv": "id,qty\n1,5\n2,7\n", "incoming/alice/stock.csv": "sku,n\nA,1\n", "incoming/bob/broken.csv": "a,b\n1\n",
	}
	seq := 100
	for key, tid := range files {
		out, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key),
			Body: strings.NewReader(bodies[key]), Metadata: map[string]string{"ferry-transfer-id": tid}})
		if err != nil {
			t.Fatal(err)
		}
		seq++
		ev, err := event.NewObjectCreated(event.S3Change{Account: "111122223333", Region: "us-east-1", Bucket: srv.Bucket, Key: key,
			Size: int64(len(bodies[key])), ETag: aws.ToString(out.ETag), Sequencer: fmt.Sprintf("%016d", seq),
			Requester: "111122223333", SourceIPAddress: "127.0.0.1", Reason: event.ReasonPutObject})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(ev)
		deliver(tEmu, b)
	}
	for _, en := range fake.Events() {
		b, _ := json.Marshal(map[string]any{"version": "0", "id": event.NewID(), "detail-type": en.DetailType, "source": en.Source,
			"account": "111122223333", "time": time.Now().UTC().Format(time.RFC3339), "region": "us-east-1",
			"resources": en.Resources, "detail": json.RawMessage(en.Detail)})
		deliver(nEmu, b)
	}

	for _, key := range []string{"processed/alice/orders.jsonl", "processed/alice/stock.jsonl", "quarantine/bob/broken.csv"} {
		if _, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key)}); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
	msgs := fake.SNS()
	for key, tid := range files {
		n := 0
		for _, m := range msgs {
			if strings.Contains(m.Message, key) {
				n++
				if !strings.Contains(m.Message, tid) {
					t.Errorf("notification for %s lacks transfer %s", key, tid)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s: %d notifications, want 1", key, n)
		}
		if logs := tProc.Output(); !strings.Contains(logs, `"transferId":"`+tid+`"`) || !strings.Contains(logs, `"TransferId":"`+tid+`"`) {
			t.Errorf("transform logs lack %s in a JSON line or an EMF line", tid)
		}
		if !strings.Contains(nProc.Output(), `"transferId":"`+tid+`"`) {
			t.Errorf("notify logs lack %s", tid)
		}
	}
	t.Logf("%d invocations, %d reported an error and were invoked again; S3 proxy %d faults (%v), AWS proxy %d faults (%v); %d PutEvents entries, %d SNS messages",
		invocations, errs, s3p.Stats().Faults, s3p.Stats().ByRule, awsp.Stats().Faults, awsp.Stats().ByRule, len(fake.Events()), len(msgs))
	if errs == 0 {
		t.Errorf("no invocation failed: the faults did not reach the functions")
	}
}

// lambdaEnv is the environment Lambda gives both functions (configs/pipeline.yaml's routes, the
// ledger in srv's bucket), with the SDK's S3 endpoint at s3URL (srv, or a proxy in front of it)
// and its EventBridge and SNS endpoints at awsURL.
func lambdaEnv(t *testing.T, srv *s3test.Server, s3URL, awsURL string) []string {
	t.Helper()
	routes, err := filepath.Abs("../../../configs/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	return []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.Secret,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_ENDPOINT_URL_S3=" + s3URL, "S3_FORCE_PATH_STYLE=true",
		"AWS_ENDPOINT_URL_EVENTBRIDGE=" + awsURL, "AWS_ENDPOINT_URL_SNS=" + awsURL,
		"AWS_LAMBDA_LOG_FORMAT=JSON", "AWS_LAMBDA_FUNCTION_NAME=ferry-test", "LAMBDA_TASK_ROOT=" + home,
		"ROUTES=" + routes, "LEDGER_BUCKET=" + srv.Bucket, "SNS_TOPIC_ARN=arn:aws:sns:us-east-1:111122223333:ferry",
	}
}
