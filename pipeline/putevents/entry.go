package putevents

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ferrygw/ferry/pipeline/event"
)

// Limits of PutEvents (API_PutEvents, eb-putevent-size).
const (
	// MaxBatchEntries is the most entries one PutEvents call may carry.
	MaxBatchEntries = 10
	// DefaultMaxRequestBytes bounds the summed entry size (Entry.Size) of one call, and so of one
	// entry. AWS says the total "must be less than 1MB" (raised from 256 KB on 2026-01-29) without
	// saying whether that is 10^6 or 2^20 bytes; 10^6 is safe either way.
	DefaultMaxRequestBytes = 1_000_000
)

// Entry is one event to publish: the fields of a PutEvents request entry other than the bus.
// EventBridge assigns id, account and region.
type Entry struct {
	Source     string
	DetailType string
	Detail     string   // a JSON object
	Resources  []string // ARNs, may be empty
	Time       time.Time
	// Time zero lets EventBridge stamp the time of the PutEvents call.
}

// Size is the entry's size as EventBridge counts it against the request limit: the UTF-8 bytes
// of Source, DetailType, Detail and each Resource, plus 14 if Time is set.
func (e Entry) Size() int {
	n := len(e.Source) + len(e.DetailType) + len(e.Detail)
	for _, r := range e.Resources {
		n += len(r)
	}
	if !e.Time.IsZero() {
		n += 14
	}
	return n
}

// check reports why EventBridge would reject e outright: it fails entries without source,
// detail-type or detail, and details that are not JSON objects.
func (e Entry) check(maxBytes int) error {
	var errs []error
	if e.Source == "" {
		errs = append(errs, errors.New("missing source"))
	}
	if e.DetailType == "" {
		errs = append(errs, errors.New("missing detail-type"))
	}
	if d := strings.TrimLeft(e.Detail, " \t\r\n"); !strings.HasPrefix(d, "{") || !json.Valid([]byte(d)) {
		errs = append(errs, errors.New("detail is not a JSON object"))
	}
	if n := e.Size(); n > maxBytes {
		errs = append(errs, fmt.Errorf("entry size %d exceeds %d bytes", n, maxBytes))
	}
	return errors.Join(errs...)
}

// EntryFrom turns an event built with the event package (for example event.NewGatewayEvent)
// into an entry, so the gateway builds an event once whether it goes to EventBridge or to the
// embedded bus. The event's id, account and region are not sent: EventBridge assigns its own.
func EntryFrom[D any](e event.Event[D]) (Entry, error) {
	d, err := json.Marshal(e.Detail)
	if err != nil {
		return Entry{}, fmt.Errorf("entry from %s event: %w", e.DetailType, err)
	}
	return Entry{
		Source: e.Source, DetailType: e.DetailType, Detail: string(d),
		Resources: slices.Clone(e.Resources), Time: e.Time,
	}, nil
}
