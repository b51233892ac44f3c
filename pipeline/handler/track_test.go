package handler

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/notify"
	"github.com/ferrygw/ferry/pipeline/tracking"
)

// TestStatusRecords: each step of each file leaves its status record beside the ledger, under
// the day the file was received, whatever the delivery order or the number of deliveries.
func TestStatusRecords(t *testing.T) {
	e := newEnv(t)
	outbox := filepath.Join(t.TempDir(), "outbox.jsonl")
	sink, err := notify.NewLocalSink(notify.LocalConfig{Outbox: outbox}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nh, err := NewNotify(NotifyConfig{Publisher: sink, Ledger: ledger.New(e.s3, e.bucket, ""), Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	meta := func(user, tid string) map[string]string {
		return map[string]string{MetaUser: user, MetaProtocol: "sftp", MetaTransferID: tid}
	}
	type file struct{ key, etag string }
	put := func(key, body string, m map[string]string) file {
		ev := e.upload(key, body, m)
		e.handle(ev)
		e.handle(ev) // a duplicate delivery changes nothing
		d, err := event.DecodeS3(ev)
		if err != nil {
			t.Fatal(err)
		}
		return file{key, d.Detail.Object.ETag}
	}
	good := put("incoming/alice/good.csv", goodCSV, meta("alice", "tid-1"))
	bad := put("incoming/alice/bad.csv", "a,b\n1\n", meta("alice", "tid-2"))
	unrouted := put("elsewhere/notes.txt", "hello", nil)
	held := put("batches/dan/1.csv", goodCSV, nil)
	waiting := put("verified/eve/w.csv", goodCSV, nil)
	copied := e.copyObj("incoming/alice/good.csv", "incoming/alice/again.csv")
	e.handle(e.created("incoming/alice/again.csv", copied, len(goodCSV), event.ReasonCopyObject))
	marker := put("batches/dan/go.done", "", nil)

	for _, fe := range e.fileEvents() { // the notify handler, once per event (and a redelivery)
		raw, err := json.Marshal(fe)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := nh.Handle(ctx(t), raw); err != nil {
				t.Fatal(err)
			}
		}
	}

	r := tracking.Reader{API: e.s3, Index: tracking.New(e.bucket, ledger.DefaultPrefix)}
	kinds := map[string][]string{}
	recs := map[string][]tracking.Record{}
	day := tracking.Day(eventTime(t, e.created("x", "e", 0, event.ReasonPutObject))) // the testdata events' day
	if err := r.Day(ctx(t), day, func(rec tracking.Record) error {
		kinds[rec.FileID] = append(kinds[rec.FileID], rec.Kind)
		recs[rec.FileID] = append(recs[rec.FileID], rec)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	id := func(f file) string { return tracking.FileID(e.bucket, f.key, f.etag) }
	cases := []struct {
		name string
		f    file
		want []string
	}{
		{"processed and notified", good, []string{"notified", "processed", "received"}},
		{"rejected and notified", bad, []string{"notified", "received", "rejected"}},
		{"no route", unrouted, []string{"received"}},
		{"held, then processed in its batch", held, []string{"notified", "processed", "received", "waiting"}},
		{"batch marker", marker, []string{"notified", "processed", "received"}},
		{"waiting for its sidecar", waiting, []string{"received", "waiting"}},
		{"a copy of processed content", file{"incoming/alice/again.csv", copied}, []string{"copy", "received"}},
	}
	for _, c := range cases {
		got := slices.Clone(kinds[id(c.f)])
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: records %v, want %v", c.name, got, c.want)
		}
	}
	for _, rec := range recs[id(good)] {
		switch rec.Kind {
		case tracking.KindReceived:
			if rec.Key != good.key || rec.User != "alice" || rec.Protocol != "sftp" || rec.TransferID != "tid-1" ||
				rec.Route != "demo-csv" || rec.Dataset != "demo" || rec.Size != int64(len(goodCSV)) {
				t.Errorf("received record %+v", rec)
			}
		case tracking.KindProcessed:
			if rec.Outputs != 1 || rec.Records != 2 {
				t.Errorf("processed record %+v", rec)
			}
		case tracking.KindNotified:
			if rec.MessageID == "" || rec.Dataset != "demo" {
				t.Errorf("notified record %+v", rec)
			}
		}
	}
	for _, rec := range recs[id(held)] {
		if rec.Kind == tracking.KindWaiting && (rec.For != tracking.ForMarker || rec.What != "*.done") {
			t.Errorf("waiting record %+v", rec)
		}
		if (rec.Kind == tracking.KindProcessed || rec.Kind == tracking.KindNotified) && rec.Batch != id(marker) {
			t.Errorf("batch member's %s record names batch %q, want %q", rec.Kind, rec.Batch, id(marker))
		}
	}
	for _, rec := range recs[id(waiting)] {
		if rec.Kind == tracking.KindWaiting && (rec.For != tracking.ForSidecar || rec.What != "verified/eve/w.csv.sha256") {
			t.Errorf("waiting record %+v", rec)
		}
	}
	for _, rec := range recs[id(bad)] {
		if rec.Kind == tracking.KindRejected && rec.Line != 2 {
			t.Errorf("rejected record %+v", rec)
		}
	}
	tf, err := r.Transfer(ctx(t), "tid-1")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, f := range tf {
		ids = append(ids, f.FileID)
	}
	slices.Sort(ids)
	want := []string{id(good), id(file{"incoming/alice/again.csv", copied})} // a copy keeps the id
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("transfer tid-1: %v, want %v", ids, want)
	}
	if n := len(readOutbox(t, outbox)); n != 3 {
		t.Errorf("%d notices, want 3", n)
	}
}

func eventTime(t *testing.T, raw []byte) time.Time {
	t.Helper()
	env, err := event.DecodeEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	return env.Time
}
