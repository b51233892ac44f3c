package transferevents

import (
	"io"
	"log/slog"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/putevents"
)

// EntryPublisher is what the EventBridge sink needs of *putevents.Publisher: a
// non-blocking enqueue that reports whether it accepted the entry.
type EntryPublisher interface {
	Publish(putevents.Entry) bool
}

var _ EntryPublisher = (*putevents.Publisher)(nil)

// EventBridgeSink sends gateway events to EventBridge through a background publisher
// (PutEvents in batches of 10, per-entry retry, bounded queue that drops and counts). The bus
// is the publisher's (putevents.Config.BusName); the source is "ferry.gateway".
type EventBridgeSink struct {
	p   EntryPublisher
	log *slog.Logger
}

var _ Sink = (*EventBridgeSink)(nil)

// NewEventBridgeSink returns a sink over p. logger may be nil.
func NewEventBridgeSink(p EntryPublisher, logger *slog.Logger) *EventBridgeSink {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &EventBridgeSink{p: p, log: logger.With("component", "transferevents")}
}

// Publish converts e to a PutEvents entry and queues it; it never blocks. A refused entry is
// counted by the publisher (its Dropped metric) and logged there.
func (s *EventBridgeSink) Publish(e event.Event[event.GatewayDetail]) {
	entry, err := putevents.EntryFrom(e)
	if err != nil {
		s.log.Error("gateway event not sent", "detail_type", e.DetailType, "err", err)
		return
	}
	s.p.Publish(entry)
}
