package recovery

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// events collects the Transfer Failed details a journal sends.
type events struct {
	mu  sync.Mutex
	got []event.GatewayDetail
}

func (e *events) failed(d event.GatewayDetail) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, d)
}

func (e *events) list() []event.GatewayDetail {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]event.GatewayDetail(nil), e.got...)
}

type fixture struct {
	t    *testing.T
	srv  *s3test.Server
	api  *s3.Client
	logs *logbuf.Buffer // every journal's log, printed when the test fails
}

func newFixture(t *testing.T) *fixture {
	srv := s3test.Start(t)
	f := &fixture{t: t, srv: srv, api: srv.Client(), logs: &logbuf.Buffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal log:\n%s", f.logs)
		}
	})
	return f
}

func (f *fixture) journal(id string, ev *events) *Journal {
	f.t.Helper()
	j, err := New(f.api, Config{Bucket: f.srv.Bucket, ReplicaID: id, Heartbeat: time.Second, StaleAfter: 3 * time.Second, Failed: ev.failed,
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		f.t.Fatal(err)
	}
	return j
}

// upload starts a real multipart upload with one part and records it in j, as s3store does.
func (f *fixture) upload(j *Journal, key string) s3store.PendingUpload {
	f.t.Helper()
	ctx := f.t.Context()
	mp, err := f.api.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &f.srv.Bucket, Key: &key})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.api.UploadPart(ctx, &s3.UploadPartInput{Bucket: &f.srv.Bucket, Key: &key, UploadId: mp.UploadId,
		PartNumber: aws.Int32(1), Body: strings.NewReader("some bytes")}); err != nil {
		f.t.Fatal(err)
	}
	u := s3store.PendingUpload{Bucket: f.srv.Bucket, Key: key, UploadID: aws.ToString(mp.UploadId), Started: time.Now(),
		Opts: storage.CreateOptions{User: "ana", Protocol: "ftps", ClientAddr: "192.0.2.1:5000", SessionID: "s1", TransferID: "t-" + key}}
	j.Started(ctx, u)
	return u
}

func (f *fixture) pending() map[string]bool {
	f.t.Helper()
	out, err := f.api.ListMultipartUploads(f.t.Context(), &s3.ListMultipartUploadsInput{Bucket: &f.srv.Bucket})
	if err != nil {
		f.t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, u := range out.Uploads {
		keys[aws.ToString(u.Key)] = true
	}
	return keys
}

func (f *fixture) journalKeys() []string {
	f.t.Helper()
	out, err := f.api.ListObjectsV2(f.t.Context(), &s3.ListObjectsV2Input{Bucket: &f.srv.Bucket, Prefix: aws.String(DefaultPrefix)})
	if err != nil {
		f.t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// With a fixed replica id, a restarted process recovers its previous run's uploads at once,
// before serving; an upload that ended but whose record stayed is dropped without an event.
func TestPreviousRunRecoveredAtStart(t *testing.T) {
	f := newFixture(t)
	ev := &events{}
	before := f.journal("gw-1", ev)
	f.upload(before, "incoming/ana/cut.bin")
	ended := f.upload(before, "incoming/ana/done.bin")
	if _, err := f.api.AbortMultipartUpload(t.Context(), &s3.AbortMultipartUploadInput{Bucket: &f.srv.Bucket,
		Key: aws.String(ended.Key), UploadId: aws.String(ended.UploadID)}); err != nil { // ended; its record stays
		t.Fatal(err)
	}
	// The process dies here: no Ended, no Close.

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	after := f.journal("gw-1", ev)
	after.Start(ctx)
	if p := f.pending(); len(p) != 0 {
		t.Fatalf("pending after the restart's first scan: %v", p)
	}
	got := ev.list()
	if len(got) != 1 || got[0].Key != "incoming/ana/cut.bin" || got[0].User != "ana" || got[0].Protocol != "ftps" ||
		got[0].TransferID != "t-incoming/ana/cut.bin" || got[0].Bytes != 10 || got[0].ClientAddress != "192.0.2.1:5000" {
		t.Fatalf("Transfer Failed events: %+v", got)
	}
	if _, err := event.NewGatewayEvent(event.DetailTypeTransferFailed, got[0], "", ""); err != nil {
		t.Errorf("the event is not valid: %v", err)
	}
	if keys := f.journalKeys(); len(keys) != 0 {
		t.Errorf("journal entries left: %v", keys)
	}
	if after.Recovered() != 1 {
		t.Errorf("Recovered() = %d, want 1", after.Recovered())
	}
}

// Two replicas scanning the journal of the same dead replica at the same moment abort each of
// its uploads once and send one event for it; a live replica's upload, next to it, stays.
func TestConcurrentRecoveryOnce(t *testing.T) {
	f := newFixture(t)
	ev := &events{}
	dead := f.journal("", ev)
	for _, k := range []string{"a", "b", "c"} {
		f.upload(dead, "incoming/ana/"+k)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	live := f.journal("", ev)
	live.Start(ctx)
	f.upload(live, "incoming/ana/live")
	// The dead replica's heartbeat is now stale and the live one's is not. Ages are read on S3's
	// clock in whole seconds (see list), so an age can read up to a second short: 3.5 s, half a
	// second past StaleAfter, failed in CI (with versitygw's lagging Date it read 2 s).
	time.Sleep(4500 * time.Millisecond)

	var wg sync.WaitGroup
	for range 2 {
		j := f.journal("", ev)
		wg.Go(func() { j.Start(ctx) })
	}
	wg.Wait()
	if p := f.pending(); len(p) != 1 || !p["incoming/ana/live"] {
		t.Fatalf("pending after recovery: %v, want the live replica's only", p)
	}
	count := map[string]int{}
	for _, d := range ev.list() {
		count[d.Key]++
	}
	for _, k := range []string{"a", "b", "c"} {
		if n := count["incoming/ana/"+k]; n != 1 {
			t.Errorf("%d events for %s, want 1", n, k)
		}
	}
	if count["incoming/ana/live"] != 0 {
		t.Errorf("an event for the live upload")
	}
}

func TestConfigRefused(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no bucket":          {},
		"prefix":             {Bucket: "b", Prefix: "/abs"},
		"stale too soon":     {Bucket: "b", Heartbeat: time.Minute, StaleAfter: 2 * time.Minute},
		"replica id charset": {Bucket: "b", ReplicaID: "a/b"},
	} {
		if _, err := New(nil, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
