package transferevents

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/pipeline/bus"
	"github.com/ferrygw/ferry/pipeline/event"
)

// TestBusSink puts the events of real uploads on the real embedded bus and receives them
// through a rule matching Ferry's gateway events.
func TestBusSink(t *testing.T) {
	b, err := bus.Open(t.TempDir(), bus.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	var mu sync.Mutex
	got := map[string]event.GatewayEvent{}
	arrived := make(chan struct{}, 100)
	err = b.AddRule(bus.Rule{
		Name: "gateway", Pattern: `{"source":["ferry.gateway"],"detail-type":["Transfer Completed"]}`,
		Target: bus.TargetFunc(func(_ context.Context, raw []byte) error {
			ev, err := event.DecodeGateway(raw)
			if err != nil {
				t.Errorf("decode %s: %v", raw, err)
				return nil
			}
			mu.Lock()
			got[ev.Detail.Key] = ev // at least once: duplicates collapse
			mu.Unlock()
			arrived <- struct{}{}
			return nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	sink := NewBusSink(b, 100, nil)
	sink.Start(t.Context())
	fsys := New(sink, Config{Account: "000000000000", Region: "local"}).Wrap(memstore.New(), "sftp")
	want := map[string]string{}
	for _, name := range []string{"a.txt", "b.txt", "c.txt"} {
		data := randomBytes(t, 100)
		up, err := fsys.Create(t.Context(), "/"+name, opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := up.Close(); err != nil {
			t.Fatal(err)
		}
		want[name] = sum(data)
	}
	// A failed upload goes on the bus too, but the rule does not match it.
	up, _ := fsys.Create(t.Context(), "/d.txt", opts)
	_ = up.Abort(nil)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(want) {
			break
		}
		select {
		case <-arrived:
		case <-deadline:
			t.Fatalf("%d of %d events delivered", n, len(want))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for name, sha := range want {
		ev, ok := got[name]
		if !ok || ev.Detail.SHA256 != sha || ev.Account != "000000000000" || ev.Region != "local" || ev.ID == "" {
			t.Errorf("%s: %+v", name, ev)
		}
	}
	if len(got) != len(want) {
		t.Errorf("delivered %d keys, want %d: %v", len(got), len(want), got)
	}
	if sink.Dropped() != 0 || sink.Failed() != 0 {
		t.Errorf("dropped %d failed %d", sink.Dropped(), sink.Failed())
	}
}

// blockingPutter never returns until released: Publish must still not block, and a full
// queue drops and counts.
type blockingPutter struct{ release chan struct{} }

func (p blockingPutter) Put(ctx context.Context, _ ...event.Envelope) error {
	select {
	case <-p.release:
	case <-ctx.Done():
	}
	return nil
}

func TestBusSinkNeverBlocks(t *testing.T) {
	p := blockingPutter{release: make(chan struct{})}
	sink := NewBusSink(p, 5, nil)
	sink.Start(t.Context())
	ev, err := event.NewGatewayEvent(event.DetailTypeLoginFailed, event.GatewayDetail{
		User: "x", Protocol: "ftp", SessionID: "s", ClientAddress: "127.0.0.1", FailureReason: FailureReason,
	}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 100 {
		sink.Publish(ev)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("100 publishes took %v", d)
	}
	// One batch is stuck in Put, five wait in the queue; the rest were dropped.
	if d := sink.Dropped(); d < 100-5-busBatch || d > 100-5 {
		t.Errorf("dropped %d", d)
	}
	close(p.release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	sink.Publish(ev) // after Close: dropped, no panic
	reg := prometheus.NewRegistry()
	reg.MustRegister(sink)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var dropped float64
	for _, mf := range mfs {
		if mf.GetName() == "ferry_gateway_events_dropped_total" {
			dropped = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if dropped < 1 || dropped != float64(sink.Dropped()) {
		t.Errorf("ferry_gateway_events_dropped_total = %v, counted %d", dropped, sink.Dropped())
	}
}
