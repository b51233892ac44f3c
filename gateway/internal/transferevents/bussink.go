package transferevents

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygw/ferry/pipeline/event"
)

// Putter is what the embedded event bus offers; *bus.Bus satisfies it. Put may block (it
// returns once the events are durable).
type Putter interface {
	Put(ctx context.Context, events ...event.Envelope) error
}

// busBatch is the most events one Put carries: they share one fsync.
const busBatch = 64

// BusSink puts gateway events on the embedded bus from a bounded queue, so a transfer's Close
// never waits for the bus's fsync. When the queue is full, events are dropped and counted.
type BusSink struct {
	put Putter
	log *slog.Logger
	q   chan event.Envelope

	mu     sync.RWMutex // read-held while enqueuing; Close takes it to stop enqueues
	closed bool

	startOnce sync.Once
	done      chan struct{}
	dropped   atomic.Uint64
	failed    atomic.Uint64
}

var _ Sink = (*BusSink)(nil)

// NewBusSink returns a sink over p holding at most queue events (default 10000). Start it.
func NewBusSink(p Putter, queue int, logger *slog.Logger) *BusSink {
	if queue <= 0 {
		queue = 10000
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &BusSink{put: p, log: logger.With("component", "transferevents"),
		q: make(chan event.Envelope, queue), done: make(chan struct{})}
}

// Start runs the loop putting queued events on the bus until Close. ctx bounds each Put.
func (s *BusSink) Start(ctx context.Context) {
	s.startOnce.Do(func() { go s.run(ctx) })
}

// Publish queues e; it never blocks.
func (s *BusSink) Publish(e event.Event[event.GatewayDetail]) {
	env, err := event.Raw(e)
	if err != nil {
		s.log.Error("gateway event not sent", "detail_type", e.DetailType, "err", err)
		s.dropped.Add(1)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.dropped.Add(1)
		return
	}
	select {
	case s.q <- env:
	default:
		if n := s.dropped.Add(1); n == 1 || n%1000 == 0 {
			s.log.Warn("gateway event queue full, dropping events", "dropped_total", n)
		}
	}
}

// Dropped counts events refused because the queue was full or the sink closed; Failed counts
// events the bus refused.
func (s *BusSink) Dropped() uint64 { return s.dropped.Load() }

// Failed counts events whose Put failed.
func (s *BusSink) Failed() uint64 { return s.failed.Load() }

// Close stops accepting events and waits until the queued ones are on the bus, or ctx ends.
func (s *BusSink) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.q)
	}
	s.mu.Unlock()
	s.Start(context.WithoutCancel(ctx)) // never started: drain now
	select {
	case <-s.done:
		if n := s.failed.Load(); n > 0 {
			return fmt.Errorf("close gateway event sink: %d events not put on the bus", n)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close gateway event sink: %w", ctx.Err())
	}
}

func (s *BusSink) run(ctx context.Context) {
	defer close(s.done)
	batch := make([]event.Envelope, 0, busBatch)
	for e := range s.q {
		batch = append(batch[:0], e)
	more:
		for len(batch) < busBatch {
			select {
			case e, ok := <-s.q:
				if !ok {
					break more
				}
				batch = append(batch, e)
			default:
				break more
			}
		}
		if err := s.put.Put(ctx, batch...); err != nil {
			s.failed.Add(uint64(len(batch)))
			level := slog.LevelError
			if errors.Is(err, context.Canceled) {
				level = slog.LevelWarn
			}
			s.log.Log(ctx, level, "gateway events not put on the bus", "events", len(batch), "err", err)
		}
	}
}

// BusSink is a prometheus.Collector, as putevents.Publisher is: reg.MustRegister(sink).
var _ prometheus.Collector = (*BusSink)(nil)

var (
	descBusDropped = prometheus.NewDesc("ferry_gateway_events_dropped_total",
		"Gateway events dropped before the embedded bus: queue full or sink closed.", nil, nil)
	descBusFailed = prometheus.NewDesc("ferry_gateway_events_failed_total",
		"Gateway events the embedded bus refused.", nil, nil)
	descBusQueued = prometheus.NewDesc("ferry_gateway_events_queue_length",
		"Gateway events waiting for the embedded bus.", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *BusSink) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBusDropped
	ch <- descBusFailed
	ch <- descBusQueued
}

// Collect implements prometheus.Collector.
func (s *BusSink) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBusDropped, prometheus.CounterValue, float64(s.Dropped()))
	ch <- prometheus.MustNewConstMetric(descBusFailed, prometheus.CounterValue, float64(s.Failed()))
	ch <- prometheus.MustNewConstMetric(descBusQueued, prometheus.GaugeValue, float64(len(s.q)))
}
