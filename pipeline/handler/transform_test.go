package handler

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/ledger"
)

const goodCSV = "id,name\n1,ann\n2,bob\n"

func TestTransformHappyPath(t *testing.T) {
	e := newEnv(t)
	e.handle(e.upload("incoming/alice/sales.csv", goodCSV, map[string]string{MetaUser: "alice", MetaTransferID: "t-1"}))
	body, meta, ok := e.get("processed/alice/sales.jsonl")
	if !ok {
		t.Fatalf("no output; keys %q", e.keys(""))
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q", body)
	}
	var row map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &row); err != nil || row["name"] != "bob" {
		t.Errorf("row %q: %v", lines[1], err)
	}
	if meta[MetaUser] != "alice" || meta[MetaTransferID] != "t-1" || meta[MetaSourceKey] != "incoming/alice/sales.csv" {
		t.Errorf("output metadata %v", meta)
	}
	evs := e.fileEvents()
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	ev := evs[0]
	d := ev.Detail
	if ev.DetailType != event.DetailTypeFileProcessed || ev.Source != event.SourcePipeline || d.User != "alice" ||
		d.TransferID != "t-1" || d.Dataset != "demo" || d.Route != "demo-csv" || len(d.Files) != 1 {
		t.Fatalf("event %+v", ev)
	}
	f := d.Files[0]
	if f.Records != 2 || len(f.Outputs) != 1 || f.Outputs[0].Key != "processed/alice/sales.jsonl" || f.Outputs[0].Size != int64(len(body)) {
		t.Errorf("file %+v", f)
	}
	if !strings.Contains(e.metrics.String(), `"FilesProcessed":1`) || !strings.Contains(e.metrics.String(), `"CloudWatchMetrics"`) {
		t.Errorf("metrics %s", e.metrics)
	}

	// An S3-native upload has no metadata: the user comes from the key.
	e.handle(e.upload("incoming/bob/q3/x.csv", goodCSV, nil))
	if _, _, ok := e.get("processed/bob/q3/x.jsonl"); !ok {
		t.Fatalf("no output for an S3-native upload; keys %q", e.keys(""))
	}
	if evs := e.fileEvents(); len(evs) != 2 || evs[1].Detail.User != "bob" {
		t.Errorf("events %+v", evs)
	}
}

func TestTransformDuplicateEvent(t *testing.T) {
	e := newEnv(t)
	ev := e.upload("incoming/alice/dup.csv", goodCSV, nil)
	e.handle(ev)
	e.handle(ev)
	// Concurrent redeliveries: one handles, the others find it done or busy, never a second event.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := e.h.Handle(ctx(t), ev); err != nil {
				t.Errorf("handle: %v", err)
			}
		})
	}
	wg.Wait()
	if n := len(e.fileEvents()); n != 1 {
		t.Errorf("%d events for one upload", n)
	}
	if ks := e.keys("processed/"); len(ks) != 1 {
		t.Errorf("outputs %q", ks)
	}
}

func TestTransformPoisonCSV(t *testing.T) {
	e := newEnv(t)
	bad := "id,name\n1,ann\n2,bob,extra\n3,cy\n"
	ev := e.upload("incoming/alice/bad.csv", bad, map[string]string{MetaUser: "alice"})
	e.handle(ev)
	e.handle(ev) // a redelivery neither loops nor notifies twice
	q, meta, ok := e.get("quarantine/alice/bad.csv")
	if !ok || q != bad {
		t.Fatalf("quarantine %q %v; keys %q", q, ok, e.keys(""))
	}
	if meta[MetaReason] == "" || meta[MetaUser] != "alice" {
		t.Errorf("quarantine metadata %v", meta)
	}
	if ks := e.keys("processed/"); len(ks) != 0 {
		t.Errorf("outputs of a rejected file: %q", ks)
	}
	evs := e.fileEvents()
	if len(evs) != 1 || evs[0].DetailType != event.DetailTypeFileRejected {
		t.Fatalf("events %+v", evs)
	}
	f := evs[0].Detail.Files[0]
	if f.Line != 3 || f.Quarantine != "quarantine/alice/bad.csv" || f.Reason == "" {
		t.Errorf("rejection %+v", f)
	}
	// A name with a space and non-ASCII letters quarantines too (CopyObject's source encoding).
	e.handle(e.upload("incoming/alice/bad état #2.csv", bad, nil))
	if _, _, ok := e.get("quarantine/alice/bad état #2.csv"); !ok {
		t.Errorf("odd name not quarantined; keys %q", e.keys("quarantine/"))
	}
	if n := len(e.fileEvents()); n != 2 {
		t.Fatalf("%d events", n)
	}
	// The quarantine copy's own event is ignored (no loop).
	qe := e.created("quarantine/alice/bad.csv", e.put("quarantine/alice/bad.csv", bad, nil), len(bad), event.ReasonCopyObject)
	e.handle(qe)
	if n := len(e.fileEvents()); n != 2 {
		t.Errorf("%d events after the quarantine copy's event", n)
	}
	if !strings.Contains(e.metrics.String(), `"FilesRejected":1`) {
		t.Errorf("metrics %s", e.metrics)
	}
}

func TestTransformCopyOfProcessedContent(t *testing.T) {
	e := newEnv(t)
	e.handle(e.upload("incoming/alice/a.csv", goodCSV, map[string]string{MetaUser: "alice", MetaTransferID: "t-9"}))
	// A rename: CopyObject to the new name, then delete. The copy's event must not process again.
	etag := e.copyObj("incoming/alice/a.csv", "incoming/alice/b.csv")
	e.handle(e.created("incoming/alice/b.csv", etag, len(goodCSV), event.ReasonCopyObject))
	if _, _, ok := e.get("processed/alice/b.jsonl"); ok {
		t.Error("the copy of processed content was processed again")
	}
	if n := len(e.fileEvents()); n != 1 {
		t.Errorf("%d events", n)
	}
	// The gateway renames files above 5 GiB with a multipart copy: the event's reason is then
	// CompleteMultipartUpload, and the transfer id the copy carries still says "seen".
	etag = e.copyObj("incoming/alice/a.csv", "incoming/alice/big-renamed.csv")
	e.handle(e.created("incoming/alice/big-renamed.csv", etag, len(goodCSV), event.ReasonCompleteMultipartUpload))
	if _, _, ok := e.get("processed/alice/big-renamed.jsonl"); ok {
		t.Error("a multipart copy of processed content was processed again")
	}
	// A client's temp-name upload renamed into place: the temp name was ignored, so the copy is
	// the first time this content is seen and it is processed.
	other := "id,name\n7,zed\n"
	tmpEv := e.upload("incoming/alice/c.csv.filepart", other, nil)
	e.handle(tmpEv)
	if n := len(e.fileEvents()); n != 1 {
		t.Fatalf("temp name produced an event")
	}
	etag = e.copyObj("incoming/alice/c.csv.filepart", "incoming/alice/c.csv")
	e.handle(e.created("incoming/alice/c.csv", etag, len(other), event.ReasonCopyObject))
	if _, _, ok := e.get("processed/alice/c.jsonl"); !ok {
		t.Errorf("renamed temp upload not processed; keys %q", e.keys(""))
	}
}

func TestTransformIgnores(t *testing.T) {
	e := newEnv(t)
	e.handle(e.created("incoming/alice/", e.put("incoming/alice/", "", nil), 0, event.ReasonPutObject))
	e.handle(e.upload("incoming/alice/x.tmp", goodCSV, nil))
	e.handle(e.upload("processed/alice/x.csv", goodCSV, nil))
	e.handle(e.upload("elsewhere/x.csv", goodCSV, nil))
	e.handle(e.upload(ledger.DefaultPrefix+"x.csv", goodCSV, nil))
	// An event for an object since replaced is dropped: the new version has its own event.
	old := e.upload("incoming/alice/r.csv", goodCSV, nil)
	e.put("incoming/alice/r.csv", "id\n1\n", nil)
	e.handle(old)
	if evs := e.fileEvents(); len(evs) != 0 {
		t.Errorf("events %+v", evs)
	}
	if err := e.h.Handle(ctx(t), []byte(`{"not":"an event"}`)); err != nil {
		t.Errorf("garbage event: %v", err)
	}
}

func TestTransformMarkerBatch(t *testing.T) {
	e := newEnv(t)
	e.handle(e.upload("batches/carol/1.csv", goodCSV, nil))
	e.handle(e.upload("batches/carol/2.csv", "id\n5\n", nil))
	if n := len(e.fileEvents()); n != 0 {
		t.Fatalf("%d events before the marker", n)
	}
	if ks := e.keys("batch-out/"); len(ks) != 0 {
		t.Fatalf("outputs before the marker: %q", ks)
	}
	marker := e.upload("batches/carol/ready.done", "", nil)
	e.handle(marker)
	e.handle(marker) // duplicate marker event
	evs := e.fileEvents()
	if len(evs) != 1 {
		t.Fatalf("%d events for one batch", len(evs))
	}
	d := evs[0].Detail
	if d.Marker != "batches/carol/ready.done" || len(d.Files) != 2 || d.User != "carol" || d.Dataset != "batches" {
		t.Errorf("batch event %+v", d)
	}
	if ks := e.keys("batch-out/carol/"); len(ks) != 2 {
		t.Errorf("batch outputs %q", ks)
	}
	// The next batch in the same folder starts empty.
	e.handle(e.upload("batches/carol/3.csv", goodCSV, nil))
	e.handle(e.upload("batches/carol/again.done", "", nil))
	evs = e.fileEvents()
	if len(evs) != 2 || len(evs[1].Detail.Files) != 1 || evs[1].Detail.Files[0].Key != "batches/carol/3.csv" {
		t.Errorf("second batch %+v", evs)
	}
}

// TestTransformLargeOutputMultipart streams an input whose output spans several parts, so the
// output goes up as a multipart upload (one part buffer in memory), byte-exact.
func TestTransformLargeOutputMultipart(t *testing.T) {
	e := newEnv(t)
	e.h.cfg.PartSize = 5 << 20
	var b strings.Builder
	b.WriteString("id,payload\n")
	pad := strings.Repeat("x", 200)
	rows := 0
	for b.Len() < 12<<20 {
		rows++
		fmt.Fprintf(&b, "%d,%s\n", rows, pad)
	}
	e.handle(e.upload("incoming/alice/big.csv", b.String(), nil))
	body, _, ok := e.get("processed/alice/big.jsonl")
	if !ok {
		t.Fatalf("no output; keys %q", e.keys(""))
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if len(lines) != rows || lines[rows-1] != fmt.Sprintf(`{"id":"%d","payload":"%s"}`, rows, pad) {
		t.Fatalf("%d lines (want %d), last %.80q", len(lines), rows, lines[len(lines)-1])
	}
	f := e.fileEvents()[0].Detail.Files[0]
	if f.Records != int64(rows) || f.Outputs[0].Size != int64(len(body)) || len(body) <= 10<<20 {
		t.Errorf("result %+v, body %d bytes", f, len(body))
	}
	head, err := e.s3.HeadObject(ctx(t), &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String("processed/alice/big.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	if etag := aws.ToString(head.ETag); !strings.Contains(etag, "-3") {
		t.Errorf("etag %s: not a 3-part multipart upload", etag)
	}
	if head.Metadata[MetaSourceKey] != "incoming/alice/big.csv" {
		t.Errorf("metadata %v", head.Metadata)
	}
}

// TestTransformMarkerBeforeFiles: S3 does not order events, so the marker's may come first.
// The marker still takes the folder's files, and their late events change nothing.
func TestTransformMarkerBeforeFiles(t *testing.T) {
	e := newEnv(t)
	f1 := e.upload("batches/erin/1.csv", goodCSV, map[string]string{MetaUser: "erin", MetaTransferID: "t-5"})
	f2 := e.upload("batches/erin/2.csv", goodCSV, nil)
	e.handle(e.upload("batches/erin/x.done", "", nil))
	e.handle(f2)
	e.handle(f1)
	evs := e.fileEvents()
	if len(evs) != 1 || len(evs[0].Detail.Files) != 2 {
		t.Fatalf("events %+v", evs)
	}
	if f := evs[0].Detail.Files[0]; f.Key != "batches/erin/1.csv" || f.TransferID != "t-5" || f.User != "erin" {
		t.Errorf("first file %+v", f)
	}
	// Nothing is left held: a new marker finds no batch.
	e.handle(e.upload("batches/erin/y.done", "", nil))
	if n := len(e.fileEvents()); n != 1 {
		t.Errorf("%d events after an empty marker", n)
	}
}
