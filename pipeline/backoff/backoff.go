// Package backoff is the one retry delay the pipeline's retrying parts share (the bus's rule
// deliveries, the EventBridge publisher).
package backoff

import (
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
