package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// 20 goroutines x 20 Puts while deliveries run, with a target that fails now and then: every
// event is delivered at least once, and nothing else is.
func TestNoLossUnderConcurrency(t *testing.T) {
	const writers, perWriter = 20, 20
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 16 << 10 // rotate several times during the test
	cfg.KeepSegments = 2
	b := openBus(t, dir, cfg)
	r := newRecorder()
	r.fail = func(call int, _ string) error {
		if call%7 == 0 {
			return errors.New("flaky")
		}
		return nil
	}
	other := newRecorder()
	retry := RetryPolicy{MaxAttempts: 50, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	if err := b.AddRule(Rule{Name: "all", Pattern: `{"source":["aws.s3"]}`, Target: r, Retry: retry}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddRule(Rule{Name: "w0", Pattern: `{"detail":{"object":{"key":[{"prefix":"w0/"}]}}}`, Target: other, Retry: retry}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := b.Put(ctx, created(t, fmt.Sprintf("w%d/%d", w, i))); err != nil {
					errs <- err
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("put: %v", err)
	}
	testtool.Eventually(t, 20*time.Second, "all deliveries", func() bool { return len(r.keys()) == writers*perWriter })
	closeBus(t, b)

	got := r.keys()
	for w := range writers {
		for i := range perWriter {
			if k := fmt.Sprintf("w%d/%d", w, i); got[k] < 1 {
				t.Errorf("%s never delivered", k)
			}
		}
	}
	if len(got) != writers*perWriter {
		t.Errorf("delivered %d distinct events, want %d", len(got), writers*perWriter)
	}
	if n := len(other.keys()); n != perWriter {
		t.Errorf("prefix rule got %d events, want %d", n, perWriter)
	}
	// The log rotated and was compacted down to KeepSegments, and what is left reads back in order.
	bases, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(bases) != cfg.KeepSegments {
		t.Errorf("log has %d segments after compaction, want %d", len(bases), cfg.KeepSegments)
	}
	lr := NewLogReader(dir, 1)
	defer lr.Close()
	var n, prev uint64
	for {
		seq, _, err := lr.Next()
		if err != nil {
			break
		}
		if prev != 0 && seq != prev+1 {
			t.Fatalf("log jumps from seq %d to %d", prev, seq)
		}
		prev = seq
		n++
	}
	if prev != writers*perWriter || n == 0 {
		t.Errorf("log ends at seq %d (%d kept), want %d", prev, n, writers*perWriter)
	}
}

// A target that takes a second per event must not slow Put down: Put waits for the log only.
// TestPutDoesNotWaitForTargets runs in a synctest bubble: virtual time passes only while every
// goroutine waits, so a Put that waited for the 1 s target would take a whole virtual second,
// and one that did not takes none, whatever the machine's load.
func TestPutDoesNotWaitForTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := openBus(t, t.TempDir(), Config{Workers: 2, MaxInFlight: 4, CheckpointInterval: 10 * time.Millisecond})
		slow := newRecorder()
		slow.delay = time.Second
		if err := b.AddRule(Rule{Name: "slow", Pattern: `{"source":["aws.s3"]}`, Target: slow}); err != nil {
			t.Fatal(err)
		}
		var worst time.Duration
		for i := range 50 {
			t0 := time.Now()
			if err := b.Put(context.Background(), created(t, fmt.Sprintf("k%d", i))); err != nil {
				t.Fatal(err)
			}
			worst = max(worst, time.Since(t0))
		}
		if worst >= slow.delay {
			t.Errorf("Put waited for the target: the slowest of 50 took %v of virtual time", worst)
		}
		// Let the targets finish (25 s of virtual time on 2 workers): a bubble may not end with
		// its goroutines still inside a delivery.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Fatalf("close: %v", err)
		}
	})
}

// A crash mid-write leaves a torn last line; Open cuts it and numbering continues.
func TestOpenCutsTornLine(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, dir, testConfig())
	for _, k := range []string{"a", "b"} {
		if err := b.Put(context.Background(), created(t, k)); err != nil {
			t.Fatal(err)
		}
	}
	closeBus(t, b)
	seg := filepath.Join(dir, segName(1))
	f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"version":"0","id":"torn`)
	f.Close()

	b2 := openBus(t, dir, testConfig())
	if err := b2.Put(context.Background(), created(t, "c")); err != nil {
		t.Fatal(err)
	}
	closeBus(t, b2)
	data, _ := os.ReadFile(seg)
	if bytes.Contains(data, []byte("torn")) {
		t.Error("torn line still in the log")
	}
	lr := NewLogReader(dir, 3)
	defer lr.Close()
	seq, line, err := lr.Next()
	if err != nil || seq != 3 || !bytes.Contains(line, []byte(`"key":"c"`)) {
		t.Errorf("seq 3 = %d %s %v, want the event for key c", seq, line, err)
	}
}

func TestOpenLocksDir(t *testing.T) {
	dir := t.TempDir()
	openBus(t, dir, testConfig())
	if b, err := Open(dir, testConfig(), nil); err == nil {
		b.Close(context.Background())
		t.Fatal("a second Open of the same dir succeeded")
	}
}

// BenchmarkPutParallel shows group commit at work: concurrent Puts share fsyncs.
func BenchmarkPutParallel(b *testing.B) {
	bus, err := Open(b.TempDir(), Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close(context.Background())
	line := []byte(`{"version":"0","id":"x","detail-type":"Object Created","source":"aws.s3","account":"","time":"2021-11-12T00:00:00Z","region":"","resources":[],"detail":{}}`)
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := bus.PutRaw(context.Background(), line); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
