package inspect_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/handler"
	"github.com/ferrygw/ferry/pipeline/inspect"
	"github.com/ferrygw/ferry/pipeline/internal/fakeaws"
	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/notify"
	"github.com/ferrygw/ferry/pipeline/route"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

const goodCSV = "id,name\n1,ann\n2,bob\n"

// deployment is the AWS side run on one machine: versitygw as S3, the transform and notify
// Lambdas' handlers in-process, EventBridge as a direct hand-off from one to the other, SNS as
// a local endpoint speaking SNS's protocol. No event log is kept: as on AWS, the records in the
// bucket are all inspect has.
type deployment struct {
	t      *testing.T
	srv    *s3test.Server
	s3     *s3.Client
	sns    *fakeaws.Server
	th     *handler.Transform
	seq    int
	mu     sync.Mutex
	notify *handler.Notify
}

// Put makes the deployment's "EventBridge": each pipeline event goes to the notify handler.
func (d *deployment) Put(ctx context.Context, evs ...event.Envelope) error {
	for _, ev := range evs {
		raw, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if err := d.notify.Handle(ctx, raw); err != nil {
			return err
		}
	}
	return nil
}

func newDeployment(t *testing.T) *deployment {
	t.Helper()
	srv := s3test.Start(t)
	fake := fakeaws.Start(t)
	d := &deployment{t: t, srv: srv, s3: srv.Client(), sns: fake}
	routes, err := route.Load("../handler/testdata/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	snsc := sns.New(sns.Options{Region: "us-east-1", BaseEndpoint: aws.String(fake.URL),
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")})
	pub, err := notify.NewSNSPublisher(snsc, "arn:aws:sns:us-east-1:111122223333:ferry", nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if d.notify, err = handler.NewNotify(handler.NotifyConfig{Publisher: pub, Ledger: ledger.New(d.s3, srv.Bucket, ""), Log: log}); err != nil {
		t.Fatal(err)
	}
	if d.th, err = handler.NewTransform(handler.TransformConfig{S3: d.s3, Routes: routes, Ledger: ledger.New(d.s3, srv.Bucket, ""),
		Events: d, Log: log, Account: "111122223333", Region: "us-east-1"}); err != nil {
		t.Fatal(err)
	}
	return d
}

func ctxT(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// upload puts key (with the gateway's metadata when meta is set) and delivers its S3 event to
// the transform handler twice, as at-least-once delivery may; it returns the etag.
func (d *deployment) upload(key, body string, meta map[string]string) string {
	d.t.Helper()
	out, err := d.s3.PutObject(ctxT(d.t), &s3.PutObjectInput{Bucket: aws.String(d.srv.Bucket), Key: aws.String(key),
		Body: strings.NewReader(body), Metadata: meta})
	if err != nil {
		d.t.Fatal(err)
	}
	etag := strings.Trim(aws.ToString(out.ETag), `"`)
	d.seq++
	ev, err := event.NewObjectCreated(event.S3Change{Account: "111122223333", Region: "us-east-1", Time: time.Now(),
		Bucket: d.srv.Bucket, Key: key, Size: int64(len(body)), ETag: etag, Sequencer: fmt.Sprintf("%016X", d.seq),
		Requester: "111122223333", SourceIPAddress: "192.0.2.7", Reason: event.ReasonPutObject})
	if err != nil {
		d.t.Fatal(err)
	}
	raw, _ := json.Marshal(ev)
	for range 2 {
		if err := d.th.Handle(ctxT(d.t), raw); err != nil {
			d.t.Fatalf("transform %s: %v", key, err)
		}
	}
	return etag
}

func gatewayMeta(user, tid, body string) map[string]string {
	return map[string]string{"ferry-user": user, "ferry-protocol": "sftp", "ferry-client": "192.0.2.7:50022",
		"ferry-transfer-id": tid, "ferry-sha256": sha256Hex(body)}
}

// TestStatusAndTraceOnAWS: the files of a day, each in another state, listed by Status from
// the status records alone, and their stories told by Trace from the bucket alone.
func TestStatusAndTraceOnAWS(t *testing.T) {
	d := newDeployment(t)
	start := time.Now().Add(-time.Second)
	d.upload("incoming/alice/good.csv", goodCSV, gatewayMeta("alice", "0123456789abcdef01234567", goodCSV))
	d.upload("incoming/alice/bad.csv", "a,b\n1\n", gatewayMeta("alice", "1123456789abcdef01234567", "a,b\n1\n"))
	d.upload("incoming/bob/native.csv", goodCSV+"3,cy\n", nil) // S3-native: no gateway metadata
	d.upload("batches/dan/1.csv", goodCSV, nil)
	d.upload("verified/eve/v.csv", goodCSV, nil)
	d.upload("elsewhere/x.txt", "hi", nil)
	d.upload("batches/carl/1.csv", goodCSV, nil)
	d.upload("batches/carl/go.done", "", nil)

	in, err := inspect.New(inspect.Config{S3: d.s3, Bucket: d.srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	files, err := in.Status(ctxT(t), inspect.Query{Since: start})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]inspect.File{}
	for _, f := range files {
		got[f.Key] = f
	}
	cases := []struct {
		key, state, describe, user, dataset string
	}{
		{"incoming/alice/good.csv", inspect.StateNotified, "processed (2 records), notified", "alice", "demo"},
		{"incoming/alice/bad.csv", inspect.StateNotified, "rejected (line 2), notified", "alice", "demo"},
		{"incoming/bob/native.csv", inspect.StateNotified, "processed (3 records), notified", "bob", "demo"},
		{"batches/dan/1.csv", inspect.StateWaiting, "waiting for marker *.done", "dan", "batches"},
		{"verified/eve/v.csv", inspect.StateWaiting, "waiting for sidecar v.csv.sha256", "eve", "demo"},
		{"elsewhere/x.txt", inspect.StateReceived, "received (no route)", "", ""},
		{"batches/carl/1.csv", inspect.StateNotified, "processed (2 records), notified", "carl", "batches"},
		{"batches/carl/go.done", inspect.StateNotified, "completed its batch of 1, notified", "carl", "batches"},
	}
	if len(files) != len(cases) {
		t.Errorf("%d files, want %d: %+v", len(files), len(cases), files)
	}
	for _, c := range cases {
		f, ok := got[c.key]
		if !ok {
			t.Errorf("%s: not listed", c.key)
			continue
		}
		if f.State != c.state || f.Describe() != c.describe || f.User != c.user || f.Dataset != c.dataset {
			t.Errorf("%s: state %q %q user %q dataset %q, want %q %q %q %q", c.key, f.State, f.Describe(), f.User, f.Dataset,
				c.state, c.describe, c.user, c.dataset)
		}
	}
	if f := got["incoming/alice/good.csv"]; f.Protocol != "sftp" || f.TransferID != "0123456789abcdef01234567" || f.MessageID == "" ||
		f.Size != int64(len(goodCSV)) || f.Received.Before(start) {
		t.Errorf("good.csv: %+v", f)
	}
	for _, q := range []struct {
		q    inspect.Query
		want int
	}{
		{inspect.Query{Since: start, User: "alice"}, 2},
		{inspect.Query{Since: start, Dataset: "batches"}, 3},
		{inspect.Query{Since: time.Now().Add(time.Minute)}, 0},
	} {
		fs, err := in.Status(ctxT(t), q.q)
		if q.q.Since.After(time.Now()) {
			if err == nil {
				t.Errorf("a period starting in the future was accepted")
			}
			continue
		}
		if err != nil || len(fs) != q.want {
			t.Errorf("status %+v: %d files (%v), want %d", q.q, len(fs), err, q.want)
		}
	}
	var table bytes.Buffer
	if err := inspect.WriteStatus(&table, files); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "RECEIVED") || strings.Count(table.String(), "\n") != len(cases)+1 {
		t.Errorf("table:\n%s", table.String())
	}

	t.Run("trace", func(t *testing.T) { traceOnAWS(t, d, in) })
}

func traceOnAWS(t *testing.T, d *deployment, in *inspect.Inspector) {
	one := func(ref string) inspect.Story {
		t.Helper()
		st, err := in.Trace(ctxT(t), ref)
		if err != nil {
			t.Fatalf("trace %s: %v", ref, err)
		}
		if len(st) != 1 {
			t.Fatalf("trace %s: %d stories", ref, len(st))
		}
		return st[0]
	}
	good := one("incoming/alice/good.csv")
	if !good.Exists || good.User != "alice" || good.Protocol != "sftp" || good.Client != "192.0.2.7:50022" ||
		good.TransferID != "0123456789abcdef01234567" || good.SHA256 != sha256Hex(goodCSV) || good.Size != int64(len(goodCSV)) {
		t.Errorf("who/what: %+v", good)
	}
	if o := good.Outcome; o == nil || o.State != inspect.StateProcessed || o.Route != "demo-csv" || len(o.Outputs) != 1 ||
		o.Outputs[0].Key != "processed/alice/good.jsonl" || o.Records != 2 {
		t.Errorf("outcome %+v", good.Outcome)
	}
	subjects := map[string]string{}
	for i, m := range d.sns.SNS() {
		subjects[fmt.Sprintf("msg-%d", i+1)] = m.Subject
	}
	if n := good.Notice; n == nil || n.Dataset != "demo" || !strings.Contains(subjects[n.MessageID], "good.csv") || n.Sent.IsZero() {
		t.Errorf("notice %+v (published: %v)", good.Notice, subjects)
	}
	var kinds []string
	for _, e := range good.Events {
		kinds = append(kinds, e.Source+":"+strings.SplitN(e.What, ":", 2)[0])
	}
	if strings.Join(kinds, " ") != "record:received by the transform record:processed record:notice sent to dataset demo, message "+good.Notice.MessageID {
		t.Errorf("events %q", kinds)
	}
	var text bytes.Buffer
	if err := inspect.WriteStory(&text, good); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"by alice over SFTP from 192.0.2.7:50022, transfer 0123456789abcdef01234567", "SHA-256    " + sha256Hex(goodCSV),
		"output s3://" + d.srv.Bucket + "/processed/alice/good.jsonl", "message id " + good.Notice.MessageID} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("story lacks %q:\n%s", want, text.String())
		}
	}

	if byID := one("0123456789abcdef01234567"); byID.Key != good.Key || byID.Notice == nil {
		t.Errorf("trace by transfer id: %+v", byID)
	}
	bad := one("s3://" + d.srv.Bucket + "/incoming/alice/bad.csv")
	if o := bad.Outcome; o == nil || o.State != inspect.StateRejected || o.Line != 2 || o.Quarantine != "quarantine/alice/bad.csv" || o.Reason == "" {
		t.Errorf("rejected outcome %+v", bad.Outcome)
	}
	native := one("incoming/bob/native.csv")
	if native.User != "bob" || native.Protocol != "" || native.SHA256 != sha256Hex(goodCSV+"3,cy\n") {
		t.Errorf("S3-native upload: user %q protocol %q sha256 %q (the transform's digest)", native.User, native.Protocol, native.SHA256)
	}
	member := one("batches/carl/1.csv")
	if o := member.Outcome; o == nil || o.State != inspect.StateProcessed || o.Marker != "batches/carl/go.done" || member.Notice == nil {
		t.Errorf("batch member: %+v %+v", member.Outcome, member.Notice)
	}
	if w := one("batches/dan/1.csv").Outcome; w == nil || w.State != "waiting" || w.Waiting != "marker *.done" {
		t.Errorf("waiting: %+v", w)
	}
	if w := one("elsewhere/x.txt").Outcome; w == nil || w.State != "unrouted" {
		t.Errorf("unrouted: %+v", w)
	}

	// The object deleted: its story is still told, from the records.
	if _, err := d.s3.DeleteObject(ctxT(t), &s3.DeleteObjectInput{Bucket: aws.String(d.srv.Bucket), Key: aws.String("incoming/alice/good.csv")}); err != nil {
		t.Fatal(err)
	}
	gone := one("incoming/alice/good.csv")
	if gone.Exists || gone.Outcome == nil || gone.Outcome.State != inspect.StateProcessed || gone.Notice == nil || gone.User != "alice" {
		t.Errorf("gone object's story: %+v", gone)
	}
	if _, err := in.Trace(ctxT(t), "incoming/nobody/none.csv"); !errors.Is(err, inspect.ErrNotFound) {
		t.Errorf("trace of nothing: %v", err)
	}
}

func sha256Hex(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
