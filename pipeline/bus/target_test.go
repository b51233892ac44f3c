package bus

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLogTargetThroughBus(t *testing.T) {
	var logs syncBuf
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	b := openBus(t, t.TempDir(), testConfig())
	if err := b.AddRule(Rule{Name: "log", Pattern: `{"source":["aws.s3"]}`, Target: LogTarget{Logger: logger, Rule: "log"}}); err != nil {
		t.Fatal(err)
	}
	e := created(t, "incoming/demo/x y.csv")
	if err := b.Put(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	closeBus(t, b)
	out := logs.String()
	for _, want := range []string{"msg=event", "rule=log", "id=" + e.ID, "source=aws.s3", `detail_type="Object Created"`, "bucket=ferry", `key="incoming/demo/x y.csv"`, "reason=PutObject"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

// A rule seen for the first time gets only events put after it was added, as on EventBridge.
func TestNewRuleStartsAtEnd(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, dir, testConfig())
	if err := b.Put(context.Background(), created(t, "before")); err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	if err := b.AddRule(Rule{Name: "late", Pattern: `{"source":["aws.s3"]}`, Target: r}); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(context.Background(), created(t, "after")); err != nil {
		t.Fatal(err)
	}
	closeBus(t, b)
	if got := r.keys(); len(got) != 1 || got["after"] != 1 {
		t.Errorf("new rule got %v, want only the event put after AddRule", got)
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	tests := []struct {
		attempt int
		lo, hi  time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 200 * time.Millisecond, 400 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second}, // capped
		{60, 500 * time.Millisecond, time.Second},
	}
	for _, tc := range tests {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := backoffDelay(p, tc.attempt)
			if d < tc.lo || d > tc.hi {
				t.Fatalf("backoff(attempt %d) = %v, want within [%v, %v]", tc.attempt, d, tc.lo, tc.hi)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("backoff(attempt %d) has no jitter: %d distinct values", tc.attempt, len(seen))
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
