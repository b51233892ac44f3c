package notify

import (
	"context"
	"fmt"

	"github.com/ferrygw/ferry/pipeline/event"
)

// Arrivals is an event target that announces every new object (not directory markers) to one
// dataset: the embedded default's notice that data has arrived, before routes and transforms
// decide more. It is idempotent in what it says: the notification id is derived from the
// object's identity, so a redelivered event yields the same id.
type Arrivals struct {
	Publisher Publisher
	Dataset   string
}

// Deliver handles one EventBridge event (as JSON); other events are ignored.
func (a Arrivals) Deliver(ctx context.Context, raw []byte) error {
	e, err := event.DecodeS3(raw)
	if err != nil || e.Source != event.SourceS3 || e.DetailType != event.DetailTypeObjectCreated {
		return nil // not ours: the rule's pattern should not have sent it
	}
	o := e.Detail.Object
	if o.IsDirectoryMarker() {
		return nil
	}
	var size int64
	if o.Size != nil {
		size = *o.Size
	}
	return a.Publisher.Publish(ctx, Notification{
		ID:      fmt.Sprintf("arrival:%s/%s@%s:%s", e.Detail.Bucket.Name, o.Key, o.ETag, o.Sequencer),
		Time:    e.Time,
		Dataset: a.Dataset,
		Subject: TruncateSubject("Arrived: " + o.Key),
		Message: fmt.Sprintf("s3://%s/%s arrived (%d bytes, %s).", e.Detail.Bucket.Name, o.Key, size, e.Detail.Reason),
		Attributes: map[string]string{
			"dataset": a.Dataset, "status": "arrived", "bucket": e.Detail.Bucket.Name, "key": o.Key,
		},
	})
}
