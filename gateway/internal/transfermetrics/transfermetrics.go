// Package transfermetrics counts uploads and downloads for Prometheus by wrapping a user's
// storage view, so every protocol is measured the same way without instrumenting each one.
package transfermetrics

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// TransferMemoryMetric is the name agreed for the gauge of memory held by transfers (upload part
// buffers, download windows), which the transfer-memory budget exports; the alerts and the
// dashboard in infra/ add it once it is registered.
const TransferMemoryMetric = "ferry_transfer_memory_bytes"

// Metrics are the transfer counters, registered once per process.
type Metrics struct {
	uploads       *prometheus.CounterVec   // protocol, result (committed|aborted|failed)
	uploadBytes   *prometheus.CounterVec   // protocol
	downloadBytes *prometheus.CounterVec   // protocol
	active        *prometheus.GaugeVec     // protocol
	duration      *prometheus.HistogramVec // protocol, direction, result
}

// New creates the counters and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_uploads_total", Help: "Uploads by protocol and result (committed, aborted, failed).",
		}, []string{"protocol", "result"}),
		uploadBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_upload_bytes_total", Help: "Bytes received from clients in uploads, committed or not.",
		}, []string{"protocol"}),
		downloadBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_download_bytes_total", Help: "Bytes read from storage for downloads.",
		}, []string{"protocol"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_uploads_in_progress", Help: "Uploads currently open.",
		}, []string{"protocol"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ferry_transfer_duration_seconds",
			Help: "Transfers from open to close, by protocol, direction (upload, download) and result (uploads: committed, aborted, failed; downloads: complete, partial).",
			// 10ms to ~3h: a small file's PutObject to a large file over a slow link.
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}, []string{"protocol", "direction", "result"}),
	}
	reg.MustRegister(m.uploads, m.uploadBytes, m.downloadBytes, m.active, m.duration)
	// The series alerts and dashboards use exist from the start, at 0 (see sessionmetrics).
	for _, p := range []string{"sftp", "ftp", "ftps"} {
		for _, r := range []string{"committed", "aborted", "failed"} {
			m.uploads.WithLabelValues(p, r)
		}
		m.uploadBytes.WithLabelValues(p)
		m.downloadBytes.WithLabelValues(p)
		m.active.WithLabelValues(p)
	}
	return m
}

// Wrap returns fsys with its transfers counted under protocol. The optional interfaces of fsys
// stay reachable through Unwrap (storage.As, storage.UploadAs).
func (m *Metrics) Wrap(fsys storage.FS, protocol string) storage.FS {
	return &counted{FS: fsys, m: m, protocol: protocol}
}

type counted struct {
	storage.FS
	m        *Metrics
	protocol string
}

var (
	_ storage.FSWrapper     = (*counted)(nil)
	_ storage.UploadWrapper = (*upload)(nil)
)

func (c *counted) Unwrap() storage.FS { return c.FS }

func (c *counted) Create(ctx context.Context, name string, opts storage.CreateOptions) (storage.Upload, error) {
	up, err := c.FS.Create(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	protocol := opts.Protocol
	if protocol == "" {
		protocol = c.protocol
	}
	c.m.active.WithLabelValues(protocol).Inc()
	return &upload{Upload: up, m: c.m, protocol: protocol, bytes: c.m.uploadBytes.WithLabelValues(protocol), start: time.Now()}, nil
}

func (c *counted) Open(ctx context.Context, name string) (storage.Reader, error) {
	r, err := c.FS.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	return &reader{Reader: r, m: c.m, protocol: c.protocol, bytes: c.m.downloadBytes.WithLabelValues(c.protocol), start: time.Now()}, nil
}

type upload struct {
	storage.Upload
	m        *Metrics
	protocol string
	bytes    prometheus.Counter
	start    time.Time
	once     sync.Once
}

func (u *upload) Write(p []byte) (int, error) {
	n, err := u.Upload.Write(p)
	u.bytes.Add(float64(n))
	return n, err
}

func (u *upload) Close() error {
	err := u.Upload.Close()
	switch {
	case err == nil:
		u.finish("committed")
	case errors.Is(err, storage.ErrAborted):
		u.finish("aborted")
	default:
		u.finish("failed")
	}
	return err
}

func (u *upload) Abort(cause error) error {
	err := u.Upload.Abort(cause)
	u.finish("aborted")
	return err
}

func (u *upload) Unwrap() storage.Upload { return u.Upload }

// finish counts the first outcome only: Close after Abort (or the reverse) is one upload.
func (u *upload) finish(result string) {
	u.once.Do(func() {
		u.m.uploads.WithLabelValues(u.protocol, result).Inc()
		u.m.active.WithLabelValues(u.protocol).Dec()
		u.m.duration.WithLabelValues(u.protocol, "upload", result).Observe(time.Since(u.start).Seconds())
	})
}

type reader struct {
	storage.Reader
	m        *Metrics
	protocol string
	bytes    prometheus.Counter
	start    time.Time
	read     atomic.Int64
	once     sync.Once
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	r.count(n)
	return n, err
}

func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.Reader.ReadAt(p, off)
	r.count(n)
	return n, err
}

func (r *reader) count(n int) {
	r.bytes.Add(float64(n))
	r.read.Add(int64(n))
}

// Close observes the download's duration: complete when at least the file's size was read
// (SFTP clients may read some ranges twice), partial otherwise.
func (r *reader) Close() error {
	err := r.Reader.Close()
	r.once.Do(func() {
		result := "complete"
		if r.read.Load() < r.Reader.Size() {
			result = "partial"
		}
		r.m.duration.WithLabelValues(r.protocol, "download", result).Observe(time.Since(r.start).Seconds())
	})
	return err
}
