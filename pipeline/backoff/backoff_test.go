package backoff

import (
	"context"
	"testing"
	"testing/synctest"
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

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if !Sleep(t.Context(), time.Minute) || time.Since(start) != time.Minute {
			t.Errorf("Sleep on a live context: returned after %v", time.Since(start))
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start = time.Now()
		if Sleep(ctx, time.Minute) || time.Since(start) != time.Second {
			t.Errorf("Sleep past its context's end: returned true or after %v, want false after 1s", time.Since(start))
		}
		if Sleep(ctx, 0) {
			t.Error("Sleep(0) on an ended context reported it live")
		}
	})
}
