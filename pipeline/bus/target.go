package bus

import (
	"context"
	"log/slog"

	"github.com/ferrygw/ferry/pipeline/event"
)

// Target receives the events a rule matched: the event's JSON exactly as logged. Deliver may be
// called more than once for the same event (at-least-once, as on AWS) and concurrently; a
// returned error (or a panic) makes the bus retry with backoff and, after the rule's
// MaxAttempts, dead-letter the event.
type Target interface {
	Deliver(ctx context.Context, event []byte) error
}

// TargetFunc adapts a function to Target.
type TargetFunc func(ctx context.Context, event []byte) error

// Deliver calls f.
func (f TargetFunc) Deliver(ctx context.Context, ev []byte) error { return f(ctx, ev) }

// LogTarget logs each event it receives at info level: the bus's observable default until
// real pipeline handlers are wired.
type LogTarget struct {
	Logger *slog.Logger
	Rule   string // logged as "rule", optional
}

// Deliver logs the event's id, source, detail type and, for S3 events, bucket and key. It
// decodes nothing when the logger drops info lines: it sees every event on the bus.
func (t LogTarget) Deliver(ctx context.Context, ev []byte) error {
	l := t.Logger
	if l == nil || !l.Enabled(ctx, slog.LevelInfo) {
		return nil
	}
	attrs := []any{"component", "bus"}
	if t.Rule != "" {
		attrs = append(attrs, "rule", t.Rule)
	}
	env, err := event.DecodeEnvelope(ev)
	if err != nil {
		l.InfoContext(ctx, "event", append(attrs, "event", string(ev))...)
		return nil
	}
	attrs = append(attrs, "id", env.ID, "source", env.Source, "detail_type", env.DetailType, "time", env.Time)
	if env.Source == event.SourceS3 {
		if s3e, err := event.As[event.S3ObjectDetail](env); err == nil {
			attrs = append(attrs, "bucket", s3e.Detail.Bucket.Name, "key", s3e.Detail.Object.Key, "reason", s3e.Detail.Reason)
		}
	} else {
		attrs = append(attrs, "detail", string(env.Detail))
	}
	l.InfoContext(ctx, "event", attrs...)
	return nil
}

var _ Target = LogTarget{}
var _ Target = TargetFunc(nil)
