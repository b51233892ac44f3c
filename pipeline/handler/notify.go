package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/notify"
)

// NotifyHandler turns File Processed / File Rejected events into notifications. With a
// Ledger, a redelivered event (same detail id) yields one notification only.
type NotifyHandler struct {
	pub    notify.Publisher
	ledger *Ledger
	log    *slog.Logger
}

// NewNotifyHandler returns a handler publishing to pub; ledger may be nil (no dedup).
func NewNotifyHandler(pub notify.Publisher, ledger *Ledger, logger *slog.Logger) *NotifyHandler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &NotifyHandler{pub: pub, ledger: ledger, log: logger}
}

// Deliver makes the handler a bus target.
func (h *NotifyHandler) Deliver(ctx context.Context, ev []byte) error { return h.Handle(ctx, ev) }

// Handle publishes the notification for one pipeline event. An event that is not a valid
// pipeline event is logged and dropped (retrying cannot fix it); a failed publish is returned
// so the event is retried.
func (h *NotifyHandler) Handle(ctx context.Context, raw json.RawMessage) error {
	e, err := event.DecodeFile(raw)
	if err != nil {
		h.log.ErrorContext(ctx, "notify: dropping an event that is not a pipeline event", "err", err)
		return nil
	}
	d := e.Detail
	log := h.log.With("transferId", d.TransferID, "route", d.Route, "dataset", d.Dataset, "id", d.ID)
	n := BuildNotification(e)
	name := "notify/" + safeName(d.ID)
	if h.ledger != nil {
		state, _, err := h.ledger.ClaimWait(ctx, name, busyWait)
		if err != nil {
			return err
		}
		switch state {
		case Done:
			log.InfoContext(ctx, "notify: already sent", "eventId", e.ID)
			return nil
		case Busy:
			return fmt.Errorf("notify %s: %w", d.ID, ErrBusy)
		}
	}
	if err := h.pub.Publish(ctx, n); err != nil {
		if h.ledger != nil {
			if rerr := h.ledger.Release(ctx, name); rerr != nil {
				log.WarnContext(ctx, "notify: release claim", "err", rerr)
			}
		}
		return fmt.Errorf("notify %s: %w", d.ID, err)
	}
	if h.ledger != nil {
		if err := h.ledger.Done(ctx, name, map[string]string{"event": e.ID}); err != nil {
			// Sent but not marked: a redelivery would send again. Log, do not retry (that
			// would certainly send again).
			log.ErrorContext(ctx, "notify: mark sent", "err", err)
		}
	}
	log.InfoContext(ctx, "notify: sent", "subject", n.Subject, "status", n.Attributes["status"])
	return nil
}

// BuildNotification writes the human-readable subject and body of a pipeline event: what
// arrived, from whom, where the output is and how many records, or why it was rejected.
func BuildNotification(e event.FileEvent) notify.Notification {
	d := e.Detail
	status := "processed"
	if e.DetailType == event.DetailTypeFileRejected {
		status = "rejected"
	}
	what := path.Base(d.Files[0].Key)
	if len(d.Files) > 1 {
		what = fmt.Sprintf("batch of %d files", len(d.Files))
	}
	from := d.User
	if from == "" {
		from = "an unknown sender"
	}
	subject := notify.TruncateSubject(fmt.Sprintf("[%s] %s from %s %s", d.Dataset, what, from, status))
	var b strings.Builder
	fmt.Fprintf(&b, "Dataset %s, route %s: %s from %s was %s.\n", d.Dataset, d.Route, what, from, status)
	if d.Marker != "" {
		fmt.Fprintf(&b, "Batch completed by s3://%s/%s.\n", d.Bucket, d.Marker)
	}
	for _, f := range d.Files {
		fmt.Fprintf(&b, "\nArrived: s3://%s/%s (%d bytes)", d.Bucket, f.Key, f.Size)
		user := f.User
		if user == "" {
			user = d.User
		}
		if user != "" {
			fmt.Fprintf(&b, " from %s", user)
		}
		if f.TransferID != "" {
			fmt.Fprintf(&b, ", transfer %s", f.TransferID)
		}
		b.WriteString("\n")
		if f.Reason != "" || f.Quarantine != "" {
			if f.Line > 0 {
				fmt.Fprintf(&b, "Rejected at line %d: %s\n", f.Line, f.Reason)
			} else {
				fmt.Fprintf(&b, "Rejected: %s\n", f.Reason)
			}
			if f.Quarantine != "" {
				fmt.Fprintf(&b, "Kept in quarantine: s3://%s/%s\n", d.Bucket, f.Quarantine)
			}
			continue
		}
		for _, o := range f.Outputs {
			fmt.Fprintf(&b, "Output: s3://%s/%s (%d bytes)\n", d.Bucket, o.Key, o.Size)
		}
		if f.Records > 0 {
			fmt.Fprintf(&b, "Records: %d\n", f.Records)
		}
	}
	at := e.Time
	if at.IsZero() {
		at = time.Now().UTC()
	}
	attrs := map[string]string{}
	for k, v := range d.Attributes {
		attrs[k] = v
	}
	for k, v := range map[string]string{"dataset": d.Dataset, "user": d.User, "status": status, "route": d.Route} {
		attrs[k] = v // the fixed attributes win over a dataset's own
	}
	return notify.Notification{ID: d.ID, Time: at, Dataset: d.Dataset, Subject: subject, Message: b.String(), Attributes: attrs}
}

// safeName keeps ledger keys to a plain character set.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
