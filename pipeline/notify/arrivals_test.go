package notify_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/notify"
)

type recorder struct{ got []notify.Notification }

func (r *recorder) Publish(_ context.Context, n notify.Notification) error {
	if err := n.Validate(); err != nil {
		return err
	}
	r.got = append(r.got, n)
	return nil
}

func s3Event(t *testing.T, key string, size int64, deleted bool) []byte {
	t.Helper()
	c := event.S3Change{Account: "000000000000", Region: "us-east-1", Bucket: "ferry", Key: key, Size: size,
		ETag: "abc", Sequencer: "0000000000000001", Requester: "ferry", Reason: event.ReasonPutObject}
	var e event.S3Event
	var err error
	if deleted {
		c.Reason = event.ReasonDeleteObject
		e, err = event.NewObjectDeleted(c)
	} else {
		e, err = event.NewObjectCreated(c)
	}
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestArrivals(t *testing.T) {
	rec := &recorder{}
	a := notify.Arrivals{Publisher: rec, Dataset: "arrivals"}
	ctx := context.Background()
	long := "incoming/demo/" + strings.Repeat("é", 80) + ".csv"
	for _, ev := range [][]byte{
		s3Event(t, "incoming/demo/report.csv", 42, false),
		s3Event(t, "incoming/demo/report.csv", 42, false), // redelivered
		s3Event(t, "incoming/demo/dir/", 0, false),        // directory marker: silent
		s3Event(t, "incoming/demo/old.csv", 0, true),      // deletion: silent
		s3Event(t, long, 1, false),
	} {
		if err := a.Deliver(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.got) != 3 {
		t.Fatalf("got %d notifications, want 3: %+v", len(rec.got), rec.got)
	}
	n := rec.got[0]
	if n.Dataset != "arrivals" || n.Subject != "Arrived: incoming/demo/report.csv" ||
		!strings.Contains(n.Message, "s3://ferry/incoming/demo/report.csv arrived (42 bytes") || n.Attributes["status"] != "arrived" {
		t.Errorf("notification = %+v", n)
	}
	if rec.got[1].ID != n.ID {
		t.Errorf("a redelivered event got another id: %q vs %q", rec.got[1].ID, n.ID)
	}
	if s := rec.got[2].Subject; len(s) > 100 || !utf8.ValidString(s) {
		t.Errorf("long subject = %q (%d bytes)", s, len(s))
	}
}
