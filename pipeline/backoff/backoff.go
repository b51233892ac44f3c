// Package backoff is the one retry delay the pipeline's retrying parts share (the bus's rule
// deliveries, the EventBridge publisher), and the context-aware wait between tries that the
// publisher and the gateway's S3 cleanup share.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay is the wait after the attempt-th failure (1 for the first): first doubled per attempt,
// capped at limit, with "equal jitter" (a random delay between half and all of that), so
// retrying callers do not march in step.
func Delay(first, limit time.Duration, attempt int) time.Duration {
	d := first
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	if d <= 1 {
		return max(d, 0)
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Sleep waits d, or less when ctx ends first, and reports whether ctx is still live: the wait
// between two tries of a caller that stops trying when its context ends.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
