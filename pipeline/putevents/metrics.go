package putevents

import "github.com/prometheus/client_golang/prometheus"

// The publisher is a prometheus.Collector, so exposing its counters is optional and needs no
// extra bookkeeping: reg.MustRegister(publisher).
var _ prometheus.Collector = (*Publisher)(nil)

var (
	descPublished = prometheus.NewDesc("ferry_eventbridge_events_published_total",
		"Events EventBridge accepted.", nil, nil)
	descDropped = prometheus.NewDesc("ferry_eventbridge_events_dropped_total",
		"Events refused before sending: queue full, invalid or oversized entry, or publisher closed.", nil, nil)
	descFailed = prometheus.NewDesc("ferry_eventbridge_events_failed_total",
		"Queued events given up on after all attempts, or left unsent at shutdown.", nil, nil)
	descRetried = prometheus.NewDesc("ferry_eventbridge_events_retried_total",
		"Resends of events that had failed.", nil, nil)
	descQueued = prometheus.NewDesc("ferry_eventbridge_queue_length",
		"Events waiting to be sent.", nil, nil)
)

// Describe implements prometheus.Collector.
func (p *Publisher) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPublished, descDropped, descFailed, descRetried, descQueued} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (p *Publisher) Collect(ch chan<- prometheus.Metric) {
	s := p.Stats()
	ch <- prometheus.MustNewConstMetric(descPublished, prometheus.CounterValue, float64(s.Published))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.Dropped))
	ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(s.Failed))
	ch <- prometheus.MustNewConstMetric(descRetried, prometheus.CounterValue, float64(s.Retried))
	ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(s.Queued))
}
