// Package s3metrics counts the S3 calls the gateway makes for Prometheus: calls, failures by
// operation and error code, and the SDK's retries, through a middleware on the SDK's stack, so
// every caller (the store, the users file, the readiness probe) is measured the same way.
//
// A failure is counted once per call, after the SDK's retries; the retries are counted apart,
// so a rising ferry_s3_retries_total with a flat ferry_s3_errors_total is S3 misbehaving and
// the SDK coping, and both rising is clients seeing failures.
package s3metrics

import (
	"context"
	"errors"
	"net"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the S3 call counters.
type Metrics struct {
	calls   *prometheus.CounterVec // operation
	errors  *prometheus.CounterVec // operation, code
	retries *prometheus.CounterVec // operation
}

// New creates the counters and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_s3_requests_total", Help: "S3 calls by operation (each counts once, whatever its retries).",
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_s3_errors_total",
			Help: "S3 calls that failed after the SDK's retries, by operation and error code (S3's code, or Timeout, Network, Canceled).",
		}, []string{"operation", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_s3_retries_total", Help: "Attempts the SDK repeated after a failed one, by operation.",
		}, []string{"operation"}),
	}
	reg.MustRegister(m.calls, m.errors, m.retries)
	return m
}

// Option is an s3.Options function that adds the counting middleware to a client.
func (m *Metrics) Option() func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(counter{m}, middleware.Before)
		})
	}
}

type counter struct{ m *Metrics }

func (counter) ID() string { return "FerryS3Metrics" }

func (c counter) HandleInitialize(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (
	middleware.InitializeOutput, middleware.Metadata, error,
) {
	out, md, err := next.HandleInitialize(ctx, in)
	op := awsmiddleware.GetOperationName(ctx)
	c.m.calls.WithLabelValues(op).Inc()
	if res, ok := retry.GetAttemptResults(md); ok && len(res.Results) > 1 {
		c.m.retries.WithLabelValues(op).Add(float64(len(res.Results) - 1))
	}
	if err != nil {
		c.m.errors.WithLabelValues(op, Code(err)).Inc()
	}
	return out, md, err
}

// Code names an S3 call's error for a label: S3's error code (SlowDown, NoSuchKey,
// NotFound, …), else Canceled (the caller gave up), Timeout or Network.
func Code(err error) string {
	var api smithy.APIError
	var ne net.Error
	switch {
	case errors.As(err, &api) && api.ErrorCode() != "":
		return api.ErrorCode()
	case errors.Is(err, context.Canceled):
		return "Canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "Timeout"
	}
	return "Network"
}
