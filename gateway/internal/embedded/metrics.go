package embedded

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygw/ferry/pipeline/bus"
	"github.com/ferrygw/ferry/pipeline/handler"
	"github.com/ferrygw/ferry/pipeline/notify"
)

// pipelineMetrics counts the embedded default's pipeline for Prometheus (on AWS the Lambdas
// write the same figures as CloudWatch EMF): files by route and outcome, bytes, durations,
// notifications sent and failed, and the event bus's backlog and dead letters by rule. It is
// the transform handler's Recorder and a prometheus.Collector.
type pipelineMetrics struct {
	files         *prometheus.CounterVec   // route, outcome
	bytes         *prometheus.CounterVec   // route, direction
	duration      *prometheus.HistogramVec // route
	notifications *prometheus.CounterVec   // result

	bus *bus.Bus // set once the bus is open; nil: no bus figures
}

var (
	_ handler.Recorder     = (*pipelineMetrics)(nil)
	_ prometheus.Collector = (*pipelineMetrics)(nil)

	descBusBacklog = prometheus.NewDesc("ferry_bus_backlog_events",
		"Events in the embedded bus's log a rule has not finished with (waiting, being delivered, or retried).", []string{"rule"}, nil)
	descBusDeadLetters = prometheus.NewDesc("ferry_bus_dead_letters",
		"Events a rule gave up on, waiting in the bus's dead-letter folder for `ferry redrive`.", []string{"rule"}, nil)
)

func newPipelineMetrics() *pipelineMetrics {
	m := &pipelineMetrics{
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_pipeline_files_total", Help: "Files the pipeline handled, by route and outcome (processed, rejected).",
		}, []string{"route", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_pipeline_bytes_total", Help: "Bytes the pipeline read (in) and wrote (out), by route.",
		}, []string{"route", "direction"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ferry_pipeline_duration_seconds", Help: "Time to handle one file (or batch), by route.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 9),
		}, []string{"route"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_notifications_total", Help: "Notifications published, by result (sent, failed; a failed one is retried).",
		}, []string{"result"}),
	}
	m.notifications.WithLabelValues("sent")
	m.notifications.WithLabelValues("failed")
	return m
}

// Record implements handler.Recorder.
func (m *pipelineMetrics) Record(s handler.Sample) {
	m.files.WithLabelValues(s.Route, "processed").Add(float64(s.Processed))
	m.files.WithLabelValues(s.Route, "rejected").Add(float64(s.Rejected))
	m.bytes.WithLabelValues(s.Route, "in").Add(float64(s.BytesIn))
	m.bytes.WithLabelValues(s.Route, "out").Add(float64(s.BytesOut))
	m.duration.WithLabelValues(s.Route).Observe(s.Duration.Seconds())
}

// publisher counts what p publishes.
func (m *pipelineMetrics) publisher(p notify.Publisher) notify.Publisher {
	return countedPublisher{p: p, m: m}
}

// countedPublisher keeps the message id of what it wraps (notify.IDPublisher): `ferry trace`
// names the message a reader received.
type countedPublisher struct {
	p notify.Publisher
	m *pipelineMetrics
}

var _ notify.IDPublisher = countedPublisher{}

func (c countedPublisher) Publish(ctx context.Context, n notify.Notification) error {
	_, err := c.PublishID(ctx, n)
	return err
}

func (c countedPublisher) PublishID(ctx context.Context, n notify.Notification) (string, error) {
	id, err := notify.PublishID(ctx, c.p, n)
	result := "sent"
	if err != nil {
		result = "failed"
	}
	c.m.notifications.WithLabelValues(result).Inc()
	return id, err
}

// Describe implements prometheus.Collector.
func (m *pipelineMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.files.Describe(ch)
	m.bytes.Describe(ch)
	m.duration.Describe(ch)
	m.notifications.Describe(ch)
	ch <- descBusBacklog
	ch <- descBusDeadLetters
}

// Collect implements prometheus.Collector.
func (m *pipelineMetrics) Collect(ch chan<- prometheus.Metric) {
	m.files.Collect(ch)
	m.bytes.Collect(ch)
	m.duration.Collect(ch)
	m.notifications.Collect(ch)
	if m.bus == nil {
		return
	}
	for _, s := range m.bus.Stats() {
		ch <- prometheus.MustNewConstMetric(descBusBacklog, prometheus.GaugeValue, float64(s.Backlog), s.Rule)
		ch <- prometheus.MustNewConstMetric(descBusDeadLetters, prometheus.GaugeValue, float64(s.DeadLetters), s.Rule)
	}
}
