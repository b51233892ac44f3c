package handler

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Metrics writes CloudWatch Embedded Metric Format lines (one JSON object per line; Lambda's
// log stream turns them into metrics). A nil *Metrics writes nothing.
type Metrics struct {
	w         io.Writer
	namespace string
	function  string
	now       func() time.Time
	mu        sync.Mutex
}

// NewMetrics writes to w (in a Lambda: os.Stdout) under namespace, dimension Function=function.
func NewMetrics(w io.Writer, namespace, function string) *Metrics {
	if namespace == "" {
		namespace = "Ferry/Pipeline"
	}
	return &Metrics{w: w, namespace: namespace, function: function, now: time.Now}
}

// Recorder receives what each handled input (or batch) measured: *Metrics writes EMF lines
// (the Lambdas); the embedded default counts them for Prometheus.
type Recorder interface {
	Record(Sample)
}

var _ Recorder = (*Metrics)(nil)

// Sample is what one handled input (or batch) measured.
type Sample struct {
	Route, Dataset string
	Processed      int
	Rejected       int
	BytesIn        int64
	BytesOut       int64
	Duration       time.Duration
	// TransferIDs are the gateway transfers of the inputs (none for S3-native uploads): in the
	// EMF line as a property, never a dimension, so a search for an id finds it without
	// making a metric per transfer.
	TransferIDs []string
}

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

// Record writes one EMF line for s, dimensioned by Function and Route.
func (m *Metrics) Record(s Sample) {
	if m == nil || m.w == nil {
		return
	}
	line := map[string]any{
		"_aws": map[string]any{
			"Timestamp": m.now().UnixMilli(),
			"CloudWatchMetrics": []any{map[string]any{
				"Namespace":  m.namespace,
				"Dimensions": [][]string{{"Function", "Route"}},
				"Metrics": []emfMetric{
					{"FilesProcessed", "Count"}, {"FilesRejected", "Count"},
					{"BytesIn", "Bytes"}, {"BytesOut", "Bytes"}, {"Duration", "Milliseconds"},
				},
			}},
		},
		"Function": m.function, "Route": s.Route, "Dataset": s.Dataset,
		"FilesProcessed": s.Processed, "FilesRejected": s.Rejected,
		"BytesIn": s.BytesIn, "BytesOut": s.BytesOut,
		"Duration": float64(s.Duration.Microseconds()) / 1000,
	}
	switch len(s.TransferIDs) {
	case 0:
	case 1:
		line["TransferId"] = s.TransferIDs[0]
	default:
		line["TransferIds"] = s.TransferIDs
	}
	data, err := json.Marshal(line)
	if err != nil {
		return
	}
	data = append(data, '\n')
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _ = m.w.Write(data)
}
