package bus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

// A rule whose every worker is stuck in its target does not hold up another rule: each rule
// delivers on workers of its own, so a later pipeline stage is not queued behind an earlier
// stage's backlog (or a dead webhook).
func TestRulesDoNotWaitForEachOther(t *testing.T) {
	cfg := testConfig()
	cfg.Workers = 2
	b := openBus(t, t.TempDir(), cfg)
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	stuck := TargetFunc(func(ctx context.Context, _ []byte) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	fastRule := newRecorder()
	if err := b.AddRule(Rule{Name: "stuck", Pattern: `{"source":["aws.s3"]}`, Target: stuck}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddRule(Rule{Name: "fast", Pattern: `{"source":["aws.s3"]}`, Target: fastRule}); err != nil {
		t.Fatal(err)
	}
	const n = 10
	for i := range n {
		if err := b.Put(context.Background(), created(t, fmt.Sprintf("k%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	testtool.Eventually(t, 5*time.Second, "the other rule's deliveries while the first is stuck", func() bool { return len(fastRule.keys()) == n })
	releaseOnce.Do(func() { close(release) })
	closeBus(t, b)
}

// A rule runs up to Workers deliveries at once, and no more.
func TestRuleConcurrencyIsWorkers(t *testing.T) {
	for _, workers := range []int{1, 3, 16} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			cfg := testConfig()
			cfg.Workers = workers
			b := openBus(t, t.TempDir(), cfg)
			var mu sync.Mutex
			running, peak, done := 0, 0, 0
			target := TargetFunc(func(ctx context.Context, _ []byte) error {
				mu.Lock()
				running++
				peak = max(peak, running)
				mu.Unlock()
				time.Sleep(50 * time.Millisecond) // long enough for every worker to pick a job up
				mu.Lock()
				running--
				done++
				mu.Unlock()
				return nil
			})
			if err := b.AddRule(Rule{Name: "r", Pattern: `{"source":["aws.s3"]}`, Target: target}); err != nil {
				t.Fatal(err)
			}
			n := 3 * workers
			var evs []event.Envelope
			for i := range n {
				evs = append(evs, created(t, fmt.Sprintf("k%d", i)))
			}
			if err := b.Put(context.Background(), evs...); err != nil { // at once: the workers, not the Puts, set the pace
				t.Fatal(err)
			}
			testtool.Eventually(t, 10*time.Second, "every delivery", func() bool { mu.Lock(); defer mu.Unlock(); return done == n })
			closeBus(t, b)
			if peak != workers {
				t.Errorf("%d deliveries at most at once, want %d", peak, workers)
			}
		})
	}
}
