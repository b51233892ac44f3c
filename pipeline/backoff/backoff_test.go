package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	for _, c := range []struct {
		first, limit time.Duration
		attempt      int
		lo, hi       time.Duration
	}{
		{100 * time.Millisecond, 10 * time.Second, 1, 50 * time.Millisecond, 100 * time.Millisecond},
		{100 * time.Millisecond, 10 * time.Second, 3, 200 * time.Millisecond, 400 * time.Millisecond},
		{100 * time.Millisecond, time.Second, 30, 500 * time.Millisecond, time.Second}, // capped
		{0, time.Second, 5, 0, 0},
	} {
		for range 200 {
			if d := Delay(c.first, c.limit, c.attempt); d < c.lo || d > c.hi {
				t.Fatalf("Delay(%v, %v, %d) = %v, want within [%v, %v]", c.first, c.limit, c.attempt, d, c.lo, c.hi)
			}
		}
	}
}
