package embedded

// The embedded S3 endpoint's changes become the events AWS S3 sends to EventBridge, so the
// pipeline sees the same JSON locally as on AWS.

import (
	"fmt"

	"github.com/ferrygw/ferry/gateway/internal/embedded/s3server"
	"github.com/ferrygw/ferry/pipeline/event"
)

// LocalAccount is the account id in locally made events (no AWS account exists here).
const LocalAccount = "000000000000"

// FromChange builds the Object Created or Object Deleted event for c.
func FromChange(c s3server.Change, region string) (event.S3Event, error) {
	sc := event.S3Change{
		Account: LocalAccount, Region: region, Time: c.Time,
		Bucket: c.Bucket, Key: c.Key, Size: c.Size, ETag: c.ETag,
		Sequencer: c.Sequencer, RequestID: c.RequestID, Requester: c.Requester,
		SourceIPAddress: c.SourceIP, Reason: c.Reason,
	}
	if sc.Requester == "" {
		sc.Requester = LocalAccount
	}
	var (
		e   event.S3Event
		err error
	)
	if c.Deleted {
		e, err = event.NewObjectDeleted(sc)
	} else {
		e, err = event.NewObjectCreated(sc)
	}
	if err != nil {
		return event.S3Event{}, fmt.Errorf("s3 event for %s/%s: %w", c.Bucket, c.Key, err)
	}
	return e, nil
}
