package putevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygw/ferry/pipeline/event"
)

func testEntry(n int) Entry {
	return Entry{
		Source: event.SourceGateway, DetailType: event.DetailTypeTransferCompleted,
		Detail:    fmt.Sprintf(`{"n":%d,"key":"incoming/demo/file %d ü.csv"}`, n, n),
		Resources: []string{"arn:aws:s3:::ferry"},
		Time:      time.Date(2026, 3, 2, 9, 15, 27, 500e6, time.UTC).Add(time.Duration(n) * time.Second),
	}
}

func entryN(t *testing.T, e wireEntry) int {
	t.Helper()
	var d struct{ N int }
	if err := json.Unmarshal([]byte(e.Detail), &d); err != nil {
		t.Fatalf("detail %q: %v", e.Detail, err)
	}
	return d.N
}

func ns(t *testing.T, entries []wireEntry) []int {
	var out []int
	for _, e := range entries {
		out = append(out, entryN(t, e))
	}
	return out
}

func newPublisher(t *testing.T, f *fakeEventBridge, cfg Config) *Publisher {
	t.Helper()
	cfg.BusName = f.wantBus
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Millisecond
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 20 * time.Millisecond
	}
	p, err := New(f.client(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func closeWithin(t *testing.T, p *Publisher, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func TestBatchesOfTenWithWireFields(t *testing.T) {
	f := newFakeEventBridge(t, nil)
	p := newPublisher(t, f, Config{})
	for i := range 25 {
		if !p.Publish(testEntry(i)) {
			t.Fatalf("publish %d refused", i)
		}
	}
	p.Start(t.Context())
	closeWithin(t, p, 5*time.Second)

	reqs := f.all()
	var sizes []int
	next := 0
	for _, r := range reqs {
		sizes = append(sizes, len(r))
		for _, e := range r {
			want := testEntry(next)
			if n := entryN(t, e); n != next {
				t.Errorf("entry %d arrived as %d: order lost", next, n)
			}
			if e.Source != want.Source || e.DetailType != want.DetailType || e.Detail != want.Detail ||
				len(e.Resources) != 1 || e.Resources[0] != want.Resources[0] {
				t.Errorf("wire entry %+v, want %+v", e, want)
			}
			secs, err := strconv.ParseFloat(string(e.Time), 64)
			if err != nil || math.Abs(secs-float64(want.Time.UnixMilli())/1000) > 0.001 {
				t.Errorf("time %q, want epoch seconds of %v", e.Time, want.Time)
			}
			next++
		}
	}
	if fmt.Sprint(sizes) != "[10 10 5]" {
		t.Errorf("batch sizes %v, want [10 10 5]", sizes)
	}
	if s := p.Stats(); s.Published != 25 || s.Failed != 0 || s.Dropped != 0 || s.Retried != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestBatchesRespectRequestSize(t *testing.T) {
	f := newFakeEventBridge(t, nil)
	f.maxBytes = 1000
	p := newPublisher(t, f, Config{MaxRequestBytes: 1000})
	big := func(n int) Entry {
		e := testEntry(n)
		e.Detail = fmt.Sprintf(`{"n":%d,"pad":%q}`, n, strings.Repeat("x", 400))
		return e
	}
	for i := range 5 {
		if !p.Publish(big(i)) {
			t.Fatalf("publish %d refused", i)
		}
	}
	huge := testEntry(99)
	huge.Detail = fmt.Sprintf(`{"pad":%q}`, strings.Repeat("y", 1000))
	if p.Publish(huge) {
		t.Error("an entry larger than a request was accepted")
	}
	p.Start(t.Context())
	closeWithin(t, p, 5*time.Second)
	var got []string
	for _, r := range f.all() {
		got = append(got, fmt.Sprint(ns(t, r)))
	}
	// ~470 bytes each: two fit under 1000, the third waits for the next request.
	if strings.Join(got, " ") != "[0 1] [2 3] [4]" {
		t.Errorf("requests %v", got)
	}
	if s := p.Stats(); s.Published != 5 || s.Dropped != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestPartialFailureResendsOnlyFailedEntries(t *testing.T) {
	f := newFakeEventBridge(t, func(n int, entries []wireEntry) reply {
		if n == 0 {
			return reply{fail: map[int]string{1: "ThrottlingException", 3: "InternalFailure", 5: "MalformedDetail"}}
		}
		return reply{}
	})
	p := newPublisher(t, f, Config{MaxAttempts: 3})
	for i := range 10 {
		p.Publish(testEntry(i))
	}
	p.Start(t.Context())
	closeWithin(t, p, 5*time.Second)
	reqs := f.all()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	// Only the retryable failures go again, in their original order; the MalformedDetail one
	// cannot succeed and is not resent.
	if got := fmt.Sprint(ns(t, reqs[1])); got != "[1 3]" {
		t.Errorf("resent %s, want [1 3]", got)
	}
	if s := p.Stats(); s.Published != 9 || s.Failed != 1 || s.Retried != 2 || s.Dropped != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	f := newFakeEventBridge(t, func(n int, entries []wireEntry) reply {
		fail := map[int]string{}
		for i, e := range entries {
			if strings.Contains(e.Detail, `"n":2,`) {
				fail[i] = "InternalFailure"
			}
		}
		return reply{fail: fail}
	})
	p := newPublisher(t, f, Config{MaxAttempts: 3})
	for i := range 4 {
		p.Publish(testEntry(i))
	}
	p.Start(t.Context())
	closeWithin(t, p, 5*time.Second)
	var got []string
	for _, r := range f.all() {
		got = append(got, fmt.Sprint(ns(t, r)))
	}
	if strings.Join(got, " ") != "[0 1 2 3] [2] [2]" {
		t.Errorf("requests %v, want the failing entry sent 3 times in all", got)
	}
	if s := p.Stats(); s.Published != 3 || s.Failed != 1 || s.Retried != 2 {
		t.Errorf("stats %+v", s)
	}
}

// TestTimingInVirtualTime checks when requests leave, in a synctest bubble (virtual time, the
// fake reached in memory): a partial batch waits exactly FlushInterval for more entries, a full
// batch leaves at once, and a failed entry is resent after the jittered backoff, alone.
func TestTimingInVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newInMemoryEventBridge(t, func(n int, entries []wireEntry) reply {
			if n == 0 {
				return reply{fail: map[int]string{1: "InternalFailure"}}
			}
			return reply{}
		})
		const flush, first = time.Second, 100 * time.Millisecond
		p := newPublisher(t, f, Config{FlushInterval: flush, Backoff: first, MaxAttempts: 3})
		p.Start(t.Context())
		start := time.Now()
		for i := range 3 {
			p.Publish(testEntry(i))
		}
		time.Sleep(flush - time.Nanosecond)
		synctest.Wait()
		if got := f.arrivals(start); len(got) != 0 {
			t.Fatalf("a partial batch left before FlushInterval: at %v", got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got := f.arrivals(start); len(got) != 1 || got[0] != flush {
			t.Fatalf("requests at %v, want one at %v", got, flush)
		}
		time.Sleep(first) // the resend's backoff is between first/2 and first
		synctest.Wait()
		got := f.arrivals(start)
		if len(got) != 2 || got[1] < flush+first/2 || got[1] > flush+first {
			t.Fatalf("requests at %v, want the resend within [%v, %v]", got, flush+first/2, flush+first)
		}
		full := time.Now()
		for i := range 10 {
			p.Publish(testEntry(100 + i))
		}
		synctest.Wait()
		if got := f.arrivals(full); len(got) != 3 || got[2] != 0 {
			t.Fatalf("a full batch waited: requests at %v after it was queued", got)
		}
		closeWithin(t, p, time.Minute)
		var sent []string
		for _, r := range f.all() {
			sent = append(sent, fmt.Sprint(ns(t, r)))
		}
		if want := "[0 1 2] [1] [100 101 102 103 104 105 106 107 108 109]"; strings.Join(sent, " ") != want {
			t.Errorf("requests %v, want %s", sent, want)
		}
		if s := p.Stats(); s.Published != 13 || s.Retried != 1 || s.Failed != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestWholeRequestErrorsAreRetried(t *testing.T) {
	for _, tt := range []struct {
		name    string
		status  int
		errType string
	}{
		{"server 500", http.StatusInternalServerError, "InternalException"},
		{"throttled call", http.StatusBadRequest, "ThrottlingException"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEventBridge(t, func(n int, _ []wireEntry) reply {
				if n == 0 {
					return reply{status: tt.status, errType: tt.errType}
				}
				return reply{}
			})
			p := newPublisher(t, f, Config{MaxAttempts: 3})
			for i := range 3 {
				p.Publish(testEntry(i))
			}
			p.Start(t.Context())
			closeWithin(t, p, 5*time.Second)
			reqs := f.all()
			if len(reqs) != 2 || fmt.Sprint(ns(t, reqs[0])) != "[0 1 2]" || fmt.Sprint(ns(t, reqs[1])) != "[0 1 2]" {
				t.Errorf("requests %v", reqs)
			}
			if s := p.Stats(); s.Published != 3 || s.Retried != 3 || s.Failed != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	f := newFakeEventBridge(t, nil)
	gate := make(chan struct{})
	f.setGate(gate)
	p := newPublisher(t, f, Config{QueueSize: 5, BatchMax: 1})
	p.Start(t.Context())
	if !p.Publish(testEntry(0)) {
		t.Fatal("first publish refused")
	}
	f.waitRequest(t, 0) // the sender is now stuck in a PutEvents call that does not answer

	const goroutines, each = 8, 500
	var accepted atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if p.Publish(testEntry(1 + g*each + i)) {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("%d publishes against a stuck endpoint took %v", goroutines*each, el)
	}
	if accepted.Load() != 5 {
		t.Errorf("accepted %d, want the queue size 5", accepted.Load())
	}
	if s := p.Stats(); s.Dropped != goroutines*each-5 || s.Queued != 5 {
		t.Errorf("stats %+v", s)
	}
	close(gate)
	closeWithin(t, p, 5*time.Second)
	if s := p.Stats(); s.Published != 6 || s.Failed != 0 {
		t.Errorf("after close: %+v", s)
	}
	if p.Publish(testEntry(0)) {
		t.Error("publish after close accepted")
	}
}

func TestCloseDrainsWithoutWaitingForFlush(t *testing.T) {
	f := newFakeEventBridge(t, nil)
	p := newPublisher(t, f, Config{FlushInterval: time.Hour})
	p.Start(t.Context())
	for i := range 13 {
		p.Publish(testEntry(i))
	}
	f.waitRequest(t, 0) // a full batch goes at once; the remaining 3 wait for more
	start := time.Now()
	closeWithin(t, p, 5*time.Second)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("close took %v", el)
	}
	var all []int
	for _, r := range f.all() {
		all = append(all, ns(t, r)...)
	}
	if len(all) != 13 {
		t.Errorf("delivered %v", all)
	}
	if s := p.Stats(); s.Published != 13 {
		t.Errorf("stats %+v", s)
	}
}

func TestCloseWithoutStartStillDrains(t *testing.T) {
	f := newFakeEventBridge(t, nil)
	p := newPublisher(t, f, Config{})
	p.Publish(testEntry(0))
	closeWithin(t, p, 5*time.Second)
	if s := p.Stats(); s.Published != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestCloseGivesUpAtDeadline(t *testing.T) {
	f := newFakeEventBridge(t, nil)
	gate := make(chan struct{})
	f.setGate(gate)
	defer close(gate)
	p := newPublisher(t, f, Config{BatchMax: 2})
	p.Start(t.Context())
	for i := range 7 {
		p.Publish(testEntry(i))
	}
	f.waitRequest(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("close: %v, want deadline exceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("close took %v past its deadline", el)
	}
	if s := p.Stats(); s.Failed != 7 || s.Published != 0 || s.Queued != 0 {
		t.Errorf("stats %+v: all 7 should count as failed", s)
	}
}

func TestInvalidEntriesAreDropped(t *testing.T) {
	f := newFakeEventBridge(t, nil)
	p := newPublisher(t, f, Config{})
	for _, e := range []Entry{
		{DetailType: "x", Detail: `{}`},
		{Source: "s", Detail: `{}`},
		{Source: "s", DetailType: "x", Detail: `[]`},
		{Source: "s", DetailType: "x", Detail: `null`},
		{Source: "s", DetailType: "x", Detail: `{"a":`},
		{Source: "s", DetailType: "x"},
	} {
		if p.Publish(e) {
			t.Errorf("accepted %+v", e)
		}
	}
	closeWithin(t, p, 5*time.Second)
	if s := p.Stats(); s.Dropped != 6 || len(f.all()) != 0 {
		t.Errorf("stats %+v, %d requests", s, len(f.all()))
	}
}

// Every Publish that returned true ends up published or failed, never silently lost, even when
// Close races with publishers.
func TestPublishRacingClose(t *testing.T) {
	f := newFakeEventBridge(t, nil)
	p := newPublisher(t, f, Config{QueueSize: 50, FlushInterval: time.Millisecond})
	p.Start(t.Context())
	var accepted, refused atomic.Uint64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 300 {
				if p.Publish(testEntry(g*1000 + i)) {
					accepted.Add(1)
				} else {
					refused.Add(1)
				}
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	closeWithin(t, p, 5*time.Second)
	wg.Wait()
	s := p.Stats()
	if s.Published+s.Failed != accepted.Load() || s.Dropped != refused.Load() {
		t.Errorf("stats %+v, accepted %d, refused %d", s, accepted.Load(), refused.Load())
	}
	delivered := 0
	for _, r := range f.all() {
		delivered += len(r)
	}
	if uint64(delivered) != s.Published {
		t.Errorf("server got %d entries, publisher counts %d", delivered, s.Published)
	}
}

func TestEntryFromGatewayEvent(t *testing.T) {
	start := time.Date(2026, 3, 2, 9, 15, 20, 0, time.UTC)
	ev, err := event.NewGatewayEvent(event.DetailTypeTransferCompleted, event.GatewayDetail{
		User: "demo", Protocol: event.ProtocolSFTP, SessionID: "s-1", ClientAddress: "127.0.0.1:1",
		Bucket: "ferry", Key: "incoming/demo/a b+ü.csv", Bytes: 3,
		SHA256:     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		TransferID: "t-1", StartTime: start, EndTime: start.Add(2 * time.Second),
	}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := EntryFrom(ev)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeEventBridge(t, nil)
	p := newPublisher(t, f, Config{})
	p.Publish(e)
	closeWithin(t, p, 5*time.Second)
	reqs := f.all()
	if len(reqs) != 1 || len(reqs[0]) != 1 {
		t.Fatalf("requests %v", reqs)
	}
	w := reqs[0][0]
	var d event.GatewayDetail
	if err := json.Unmarshal([]byte(w.Detail), &d); err != nil {
		t.Fatal(err)
	}
	if d != ev.Detail || w.Source != event.SourceGateway || w.DetailType != event.DetailTypeTransferCompleted ||
		len(w.Resources) != 1 || w.Resources[0] != "arn:aws:s3:::ferry" || string(w.Time) != strconv.FormatInt(ev.Time.Unix(), 10) {
		t.Errorf("wire %+v\nwant detail %+v time %d", w, ev.Detail, ev.Time.Unix())
	}
}

func TestEntrySize(t *testing.T) {
	tests := []struct {
		e    Entry
		want int
	}{
		{Entry{Source: "a", DetailType: "bc", Detail: "{}"}, 5},
		{Entry{Source: "a", DetailType: "bc", Detail: "{}", Time: time.Unix(1, 0)}, 19},
		{Entry{Source: "a", DetailType: "bc", Detail: `{"k":"ü"}`, Resources: []string{"r1", "r22"}}, 3 + 10 + 5},
	}
	for _, tt := range tests {
		if got := tt.e.Size(); got != tt.want {
			t.Errorf("%+v Size = %d, want %d", tt.e, got, tt.want)
		}
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{{BatchMax: 11}, {BatchMax: -1}, {MaxAttempts: -1}, {QueueSize: -1}, {Backoff: -time.Second}} {
		if _, err := New(nil, c, nil); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
	p, err := New(nil, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := p.cfg; c.BusName != "default" || c.QueueSize != 10000 || c.BatchMax != 10 || c.MaxAttempts != 5 {
		t.Errorf("defaults %+v", c)
	}
}

func TestMetrics(t *testing.T) {
	f := newFakeEventBridge(t, func(n int, _ []wireEntry) reply {
		return reply{fail: map[int]string{0: "MalformedDetail"}}
	})
	p := newPublisher(t, f, Config{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(p)
	p.Publish(testEntry(0))
	p.Publish(testEntry(1))
	p.Publish(Entry{})
	closeWithin(t, p, 5*time.Second)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			got[mf.GetName()] = c.GetValue()
		} else {
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"ferry_eventbridge_events_published_total": 1,
		"ferry_eventbridge_events_failed_total":    1,
		"ferry_eventbridge_events_dropped_total":   1,
		"ferry_eventbridge_events_retried_total":   0,
		"ferry_eventbridge_queue_length":           0,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("metrics %v, want %v", got, want)
	}
}

func TestBackoff(t *testing.T) {
	p, err := New(nil, Config{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second},
		{60, 500 * time.Millisecond, time.Second},
	} {
		for range 20 {
			if d := p.backoff(tt.attempt); d < tt.min || d > tt.max {
				t.Errorf("backoff(%d) = %v, want in [%v, %v]", tt.attempt, d, tt.min, tt.max)
			}
		}
	}
}

func TestStartContextCancelAbandonsQueue(t *testing.T) {
	f := newFakeEventBridge(t, nil)
	gate := make(chan struct{})
	f.setGate(gate)
	defer close(gate)
	p := newPublisher(t, f, Config{BatchMax: 1})
	ctx, cancel := context.WithCancel(context.Background())
	p.Start(ctx)
	for i := range 4 {
		p.Publish(testEntry(i))
	}
	f.waitRequest(t, 0)
	cancel()
	if err := p.Close(context.Background()); err == nil || !strings.Contains(err.Error(), "3 events not sent") {
		t.Errorf("close: %v", err)
	}
	if s := p.Stats(); s.Failed != 4 || s.Published != 0 {
		t.Errorf("stats %+v", s)
	}
	if p.Publish(testEntry(9)) {
		t.Error("publish accepted after the loop stopped")
	}
}
