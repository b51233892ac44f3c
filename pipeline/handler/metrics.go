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

// Sample is what one handled input (or batch) measured.
type Sample struct {
	Route, Dataset string
	Processed      int
	Rejected       int
	BytesIn        int64
	BytesOut       int64
	Duration       time.Duration
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
	data, err := json.Marshal(line)
	if err != nil {
		return
	}
	data = append(data, '\n')
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _ = m.w.Write(data)
}
