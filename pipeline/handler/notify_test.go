package handler

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/ferrygw/ferry/pipeline/internal/fakeaws"
	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/notify"
)

const defaultTopic = "arn:aws:sns:us-east-1:111122223333:ferry"

func newNotify(t *testing.T, e *env) (*Notify, *fakeaws.Server) {
	t.Helper()
	fake := fakeaws.Start(t)
	client := sns.New(sns.Options{Region: "us-east-1", BaseEndpoint: aws.String(fake.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")})
	pub, err := notify.NewSNSPublisher(client, defaultTopic, map[string]string{"batches": "arn:aws:sns:us-east-1:111122223333:batches"})
	if err != nil {
		t.Fatal(err)
	}
	nh, err := NewNotify(NotifyConfig{Publisher: pub, Ledger: ledger.New(e.s3, e.bucket, ""), Log: testLogger(t), Datasets: e.h.cfg.Routes.Datasets})
	if err != nil {
		t.Fatal(err)
	}
	return nh, fake
}

func rawEvents(t *testing.T, e *env) [][]byte {
	var out [][]byte
	for _, ev := range e.events.all() {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestNotifyEndToEnd runs uploads through the transform handler and its events through the
// notify handler to SNS's wire format: a processed file, a rejected one, duplicates of both.
func TestNotifyEndToEnd(t *testing.T) {
	e := newEnv(t)
	nh, fake := newNotify(t, e)
	e.handle(e.upload("incoming/alice/sales.csv", goodCSV, map[string]string{MetaUser: "alice", MetaTransferID: "t-1"}))
	e.handle(e.upload("incoming/bob/bad.csv", "a,b\n1\n", nil))
	evs := rawEvents(t, e)
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	for _, ev := range append(evs, evs...) { // every event delivered twice
		if err := nh.Handle(ctx(t), ev); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for range 3 { // and concurrently
		wg.Go(func() {
			if err := nh.Handle(ctx(t), evs[0]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	msgs := fake.SNS()
	if len(msgs) != 2 {
		t.Fatalf("%d notifications, want 2: %+v", len(msgs), msgs)
	}
	ok, bad := msgs[0], msgs[1]
	want := map[string]string{"dataset": "demo", "user": "alice", "status": "processed", "route": "demo-csv", "team": "demo"}
	for k, v := range want {
		if ok.Attributes[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, ok.Attributes[k], v)
		}
	}
	if ok.TopicArn != defaultTopic || !strings.Contains(ok.Subject, "sales.csv") || !strings.Contains(ok.Subject, "alice") {
		t.Errorf("processed notification %+v", ok)
	}
	email := ok.Protocols["email"]
	for _, s := range []string{"s3://" + e.bucket + "/incoming/alice/sales.csv", "Output:    s3://" + e.bucket + "/processed/alice/sales.jsonl",
		"Records:   2", "transfer t-1", "Sent by:   alice", "SHA-256:   " + sha256Hex(goodCSV)} {
		if !strings.Contains(email, s) {
			t.Errorf("e-mail lacks %q:\n%s", s, email)
		}
	}
	if ok.MessageStructure != "json" || ok.Protocols["sms"] != "sales.csv processed: 2 records." || !strings.Contains(ok.Protocols["default"], `"kind":"processed"`) {
		t.Errorf("per-protocol messages %+v", ok.Protocols)
	}
	if bad.Attributes["status"] != "rejected" || bad.Attributes["user"] != "bob" || bad.Attributes["kind"] != "rejected" ||
		!strings.Contains(bad.Protocols["email"], "Where:     line 2") || !strings.Contains(bad.Protocols["email"], "quarantine/bob/bad.csv") ||
		bad.Subject != "[demo] Rejected: bad.csv (line 2) from bob" {
		t.Errorf("rejected notification %+v", bad)
	}
}

func TestNotifyRetriesAfterFailedPublish(t *testing.T) {
	e := newEnv(t)
	nh, fake := newNotify(t, e)
	e.handle(e.upload("incoming/alice/x.csv", goodCSV, nil))
	ev := rawEvents(t, e)[0]
	fake.FailSNS(100)
	if err := nh.Handle(ctx(t), ev); err == nil {
		t.Fatal("failed publish reported success")
	}
	fake.FailSNS(0)
	if err := nh.Handle(context.Background(), ev); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if n := len(fake.SNS()); n != 1 {
		t.Errorf("%d notifications after a retry", n)
	}
	if err := nh.Handle(ctx(t), []byte(`{"source":"x","detail-type":"y","detail":{}}`)); err != nil {
		t.Errorf("foreign event: %v", err)
	}
}
