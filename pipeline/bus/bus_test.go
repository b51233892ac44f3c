package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

// fast is a retry policy for tests: quick backoff, few attempts.
var fast = RetryPolicy{MaxAttempts: 3, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}

func testConfig() Config {
	return Config{Workers: 4, CheckpointInterval: 10 * time.Millisecond}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func openBus(t *testing.T, dir string, cfg Config) *Bus {
	t.Helper()
	b, err := Open(dir, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

func closeBus(t *testing.T, b *Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// created returns an Object Created event for key in bucket "ferry".
func created(t *testing.T, key string) event.Envelope {
	t.Helper()
	e, err := event.NewObjectCreated(event.S3Change{
		Account: "000000000000", Region: "us-east-1", Bucket: "ferry", Key: key, Size: 3,
		ETag: `"0123456789abcdef0123456789abcdef"`, Sequencer: "0000000000000001",
		Requester: "ferry", SourceIPAddress: "127.0.0.1:5000", Reason: event.ReasonPutObject,
	})
	if err != nil {
		t.Fatalf("new event: %v", err)
	}
	env, err := event.Raw(e)
	if err != nil {
		t.Fatalf("raw: %v", err)
	}
	return env
}

// recorder is a target that records the keys (or ids) of the events it gets, and can fail.
type recorder struct {
	mu    sync.Mutex
	got   map[string]int // key -> deliveries
	calls int
	fail  func(call int, key string) error
	delay time.Duration
}

func newRecorder() *recorder { return &recorder{got: map[string]int{}} }

func (r *recorder) Deliver(ctx context.Context, raw []byte) error {
	e, err := event.DecodeS3(raw)
	if err != nil {
		return fmt.Errorf("recorder: %w", err)
	}
	key := e.Detail.Object.Key
	r.mu.Lock()
	r.calls++
	call := r.calls
	fail := r.fail
	r.mu.Unlock()
	if r.delay > 0 {
		select {
		case <-time.After(r.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		if err := fail(call, key); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.got[key]++
	r.mu.Unlock()
	return nil
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[key]
}

func (r *recorder) keys() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.got))
	for k, v := range r.got {
		out[k] = v
	}
	return out
}

func TestPutLogsBeforeReturning(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, dir, testConfig())
	e := created(t, "a.txt")
	if err := b.Put(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	// Read the log as another process would, while the bus is still open.
	var lines [][]byte
	if err := Follow(context.Background(), dir, false, time.Millisecond, func(_ uint64, l []byte) error {
		lines = append(lines, append([]byte(nil), l...))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 {
		t.Fatalf("log has %d events, want 1", len(lines))
	}
	got, err := event.DecodeS3(lines[0])
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Detail.Object.Key != "a.txt" {
		t.Errorf("logged %+v, want id %s key a.txt", got, e.ID)
	}
	if err := b.PutRaw(context.Background(), []byte(`{"source":"x"}`)); err == nil {
		t.Error("PutRaw accepted an event without detail-type")
	}
}

func TestDeliveryToMultipleRules(t *testing.T) {
	b := openBus(t, t.TempDir(), testConfig())
	all, csv, demo, none := newRecorder(), newRecorder(), newRecorder(), newRecorder()
	rules := []Rule{
		{Name: "all", Pattern: `{"source":["aws.s3"]}`, Target: all},
		{Name: "csv", Pattern: `{"detail":{"object":{"key":[{"suffix":".csv"}]}}}`, Target: csv},
		{Name: "demo", Pattern: `{"detail":{"object":{"key":[{"prefix":"incoming/demo/"}]}}}`, Target: demo},
		{Name: "none", Pattern: `{"source":["ferry.gateway"]}`, Target: none},
	}
	for _, r := range rules {
		if err := b.AddRule(r); err != nil {
			t.Fatal(err)
		}
	}
	keys := []string{"incoming/demo/a.csv", "incoming/demo/b.txt", "incoming/bob/c.csv"}
	for _, k := range keys {
		if err := b.Put(context.Background(), created(t, k)); err != nil {
			t.Fatal(err)
		}
	}
	closeBus(t, b) // drains deliveries
	want := map[*recorder][]string{
		all:  keys,
		csv:  {"incoming/demo/a.csv", "incoming/bob/c.csv"},
		demo: {"incoming/demo/a.csv", "incoming/demo/b.txt"},
		none: nil,
	}
	for r, ks := range want {
		got := r.keys()
		if len(got) != len(ks) {
			t.Errorf("target got %v, want %v", got, ks)
		}
		for _, k := range ks {
			if got[k] != 1 {
				t.Errorf("target got %s %d times, want once (all: %v)", k, got[k], got)
			}
		}
	}
}

func TestAddRuleRejects(t *testing.T) {
	b := openBus(t, t.TempDir(), testConfig())
	ok := Rule{Name: "ok", Pattern: `{"source":["aws.s3"]}`, Target: newRecorder()}
	if err := b.AddRule(ok); err != nil {
		t.Fatal(err)
	}
	for _, r := range []Rule{
		ok, // duplicate
		{Name: "bad/name", Pattern: ok.Pattern, Target: ok.Target},
		{Name: "nt", Pattern: ok.Pattern},
		{Name: "num", Pattern: `{"detail":{"object":{"size":[{"numeric":[">",0]}]}}}`, Target: ok.Target},
	} {
		if err := b.AddRule(r); err == nil {
			t.Errorf("AddRule(%s) accepted", r.Name)
		}
	}
}

func TestRetryThenSuccess(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, dir, testConfig())
	r := newRecorder()
	r.fail = func(call int, _ string) error {
		if call <= 2 {
			return errors.New("target down")
		}
		return nil
	}
	if err := b.AddRule(Rule{Name: "r", Pattern: `{"source":["aws.s3"]}`, Target: r, Retry: fast}); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(context.Background(), created(t, "k")); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 5*time.Second, "delivery after retries", func() bool { return r.count("k") == 1 })
	closeBus(t, b)
	if r.calls != 3 {
		t.Errorf("target called %d times, want 3 (2 failures + success)", r.calls)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "dead-letter", "r")); len(ents) != 0 {
		t.Errorf("dead-letter has %d files after a successful retry", len(ents))
	}
}

// TestRetryExhaustedDeadLetters runs in a synctest bubble: the retries' backoff passes in
// virtual time, and "a restart delivers nothing" is checked once every goroutine of the bus is
// idle instead of after a sleep.
func TestRetryExhaustedDeadLetters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		b := openBus(t, dir, testConfig())
		r := newRecorder()
		r.fail = func(call int, _ string) error { return fmt.Errorf("boom %d", call) }
		rule := Rule{Name: "dl", Pattern: `{"detail-type":["Object Created"]}`, Target: r, Retry: fast}
		if err := b.AddRule(rule); err != nil {
			t.Fatal(err)
		}
		e := created(t, "bad.csv")
		if err := b.Put(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "dead-letter", "dl", e.ID+".json")
		time.Sleep(time.Second) // virtual: three attempts and their backoff (at most 5+20 ms)
		synctest.Wait()
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("no dead-letter file after the attempts: %v", err)
		}
		closeBus(t, b)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var dl DeadLetter
		if err := json.Unmarshal(data, &dl); err != nil {
			t.Fatalf("dead-letter file: %v\n%s", err, data)
		}
		if dl.Rule != "dl" || dl.Pattern != rule.Pattern || dl.Attempts != 3 || dl.LastError != "boom 3" {
			t.Errorf("dead letter = rule %q pattern %q attempts %d last_error %q", dl.Rule, dl.Pattern, dl.Attempts, dl.LastError)
		}
		got, err := event.DecodeS3(dl.Event)
		if err != nil || got.ID != e.ID || got.Detail.Object.Key != "bad.csv" {
			t.Errorf("dead letter event = %+v, %v", got, err)
		}
		if r.calls != 3 {
			t.Errorf("target called %d times, want MaxAttempts=3", r.calls)
		}
		// Dead-lettered counts as handled: a restart does not deliver it again.
		b2 := openBus(t, dir, testConfig())
		r2 := newRecorder()
		if err := b2.AddRule(Rule{Name: "dl", Pattern: rule.Pattern, Target: r2, Retry: fast}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		closeBus(t, b2)
		if r2.calls != 0 {
			t.Errorf("dead-lettered event redelivered %d times after restart", r2.calls)
		}
	})
}

func TestRestartRedeliversUndelivered(t *testing.T) {
	dir := t.TempDir()
	var restarted atomic.Bool
	r := newRecorder()
	r.fail = func(_ int, _ string) error {
		if !restarted.Load() {
			return errors.New("downstream unavailable")
		}
		return nil
	}
	retry := RetryPolicy{MaxAttempts: 1000, MinBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	pattern := `{"source":["aws.s3"]}`

	b := openBus(t, dir, testConfig())
	if err := b.AddRule(Rule{Name: "r", Pattern: pattern, Target: r, Retry: retry}); err != nil {
		t.Fatal(err)
	}
	// Also a rule that succeeds at once: after the restart it must not hold anything back.
	ok := newRecorder()
	if err := b.AddRule(Rule{Name: "ok", Pattern: pattern, Target: ok, Retry: retry}); err != nil {
		t.Fatal(err)
	}
	keys := []string{"one", "two", "three"}
	for _, k := range keys {
		if err := b.Put(context.Background(), created(t, k)); err != nil {
			t.Fatal(err)
		}
	}
	testtool.Eventually(t, 5*time.Second, "first rule delivering", func() bool { return len(ok.keys()) == 3 })
	testtool.Eventually(t, 5*time.Second, "failing attempts", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.calls >= 6 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := b.Close(ctx); err == nil {
		t.Error("Close reported a full drain while deliveries were still failing")
	}
	cancel()
	if n := len(r.keys()); n != 0 {
		t.Fatalf("failing target recorded %d events before restart", n)
	}

	restarted.Store(true)
	b2 := openBus(t, dir, testConfig())
	ok2 := newRecorder()
	if err := b2.AddRule(Rule{Name: "r", Pattern: pattern, Target: r, Retry: retry}); err != nil {
		t.Fatal(err)
	}
	if err := b2.AddRule(Rule{Name: "ok", Pattern: pattern, Target: ok2, Retry: retry}); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 5*time.Second, "redelivery after restart", func() bool { return len(r.keys()) == 3 })
	closeBus(t, b2)
	for _, k := range keys {
		if r.count(k) < 1 {
			t.Errorf("%s not delivered after restart", k)
		}
	}
	if n := len(ok2.keys()); n != 0 {
		t.Errorf("rule that had delivered everything got %d events again after restart", n)
	}
}
