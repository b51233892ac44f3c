package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/notify"
	"github.com/ferrygw/ferry/pipeline/route"
	"github.com/ferrygw/ferry/pipeline/tracking"
)

// Notify turns File Processed / File Rejected events into notifications written by the
// dataset's templates. With a Ledger, a redelivered event (same detail id) yields one
// notification only.
type Notify struct {
	cfg      NotifyConfig
	fallback *notify.Templates
	log      *slog.Logger
}

// NotifyConfig wires a Notify.
type NotifyConfig struct {
	Publisher notify.Publisher
	Ledger    *ledger.Ledger // nil: no dedup
	Log       *slog.Logger
	// Datasets give each dataset's templates (language, overrides) and download links; a dataset
	// not listed gets the English built-ins and no links.
	Datasets map[string]route.Dataset
	// Presigner signs the download links of datasets that ask for them; nil: no links (logged).
	Presigner Presigner
	// Credentials are the ones the Presigner signs with: a link signed with temporary
	// credentials dies with them, so the expiry a notice states is the earlier of the two.
	Credentials aws.CredentialsProvider
}

// Presigner makes pre-signed GET URLs; *s3.PresignClient satisfies it.
type Presigner interface {
	PresignGetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

var _ Presigner = (*s3.PresignClient)(nil)

// NewNotify returns a handler.
func NewNotify(cfg NotifyConfig) (*Notify, error) {
	if cfg.Publisher == nil {
		return nil, errors.New("notify handler: publisher required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Notify{cfg: cfg, fallback: notify.MustBuiltin(notify.DefaultLanguage), log: cfg.Log}, nil
}

// Deliver makes the handler a bus target.
func (h *Notify) Deliver(ctx context.Context, ev []byte) error { return h.Handle(ctx, ev) }

// Handle publishes the notification for one pipeline event. An event that is not a valid
// pipeline event is logged and dropped (retrying cannot fix it); a failed publish is returned
// so the event is retried.
func (h *Notify) Handle(ctx context.Context, raw json.RawMessage) error {
	e, err := event.DecodeFile(raw)
	if err != nil {
		h.log.ErrorContext(ctx, "notify: dropping an event that is not a pipeline event", "err", err)
		return nil
	}
	d := e.Detail
	log := h.log.With("transferId", d.TransferID, "route", d.Route, "dataset", d.Dataset, "id", d.ID)
	name := "notify/" + safeName(d.ID)
	l := h.cfg.Ledger
	if l != nil {
		state, _, err := l.ClaimWait(ctx, name, busyWait)
		if err != nil {
			return err
		}
		switch state {
		case ledger.Done:
			log.InfoContext(ctx, "notify: already sent", "eventId", e.ID)
			return nil
		case ledger.Busy:
			return fmt.Errorf("notify %s: %w", d.ID, ErrBusy)
		}
	}
	n := h.Build(ctx, log, e)
	mid, err := notify.PublishID(ctx, h.cfg.Publisher, n)
	if err != nil {
		if l != nil {
			if rerr := l.Release(ctx, name); rerr != nil {
				log.WarnContext(ctx, "notify: release claim", "err", rerr)
			}
		}
		return fmt.Errorf("notify %s: %w", d.ID, err)
	}
	sent := time.Now().UTC()
	if l != nil {
		rec := SentRecord{Event: e.ID, MessageID: mid, Dataset: n.Dataset, Subject: n.Subject, Sent: sent}
		if err := l.Done(ctx, name, rec); err != nil {
			// Sent but not marked: a redelivery would send again. Log, do not retry (that
			// would certainly send again).
			log.ErrorContext(ctx, "notify: mark sent", "err", err)
		}
		h.track(ctx, log, l, e, mid, sent)
	}
	log.InfoContext(ctx, "notify: sent", "subject", n.Subject, "status", n.Attributes["status"], "kind", n.Attributes["kind"], "messageId", mid)
	return nil
}

// SentRecord is what the ledger keeps of a notice sent (under notify/<detail id>).
type SentRecord struct {
	Event     string    `json:"event"`                // the pipeline event's id
	MessageID string    `json:"message_id,omitempty"` // SNS's MessageId (or the local sink's)
	Dataset   string    `json:"dataset,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	Sent      time.Time `json:"sent,omitzero"`
}

// track records, for `ferry status`, that every file of the notice (and a batch's marker) was
// notified. Best effort: the notice is out whatever happens here.
func (h *Notify) track(ctx context.Context, log *slog.Logger, l *ledger.Ledger, e event.FileEvent, mid string, sent time.Time) {
	d := e.Detail
	w := l.Tracker()
	put := func(r tracking.Record) {
		if err := w.Put(ctx, r); err != nil {
			log.WarnContext(ctx, "notify: status record", "err", err)
		}
	}
	batch := ""
	if d.Marker != "" {
		batch = d.ID
		received := d.MarkerReceived
		if received.IsZero() {
			received = e.Time
		}
		put(tracking.Record{Kind: tracking.KindNotified, FileID: d.ID, Day: tracking.Day(received), Time: sent,
			Dataset: d.Dataset, MessageID: mid, Batch: batch})
	}
	for _, f := range d.Files {
		received := f.Received
		if received.IsZero() {
			received = e.Time
		}
		put(tracking.Record{Kind: tracking.KindNotified, FileID: tracking.FileID(d.Bucket, f.Key, f.ETag), Day: tracking.Day(received),
			Time: sent, Dataset: d.Dataset, MessageID: mid, Batch: batch})
	}
}

// Build writes the notification of a pipeline event in its dataset's templates, with download
// links when the dataset asks for them. Problems that should not stop a notice (a link that
// could not be signed, a template failing on unforeseen data, which falls back to the built-in
// text) are logged.
func (h *Notify) Build(ctx context.Context, log *slog.Logger, e event.FileEvent) notify.Notification {
	n := notify.NewNotice(e)
	tpl := h.fallback
	if ds, ok := h.cfg.Datasets[n.Dataset]; ok {
		if ds.Templates != nil {
			tpl = ds.Templates
		}
		n.LinkExpiry = ds.LinkExpiry
	}
	if n.LinkExpiry > 0 {
		h.addLinks(ctx, log, &n)
	}
	out, err := tpl.Render(n)
	if err != nil {
		log.ErrorContext(ctx, "notify: a template failed; the built-in text was used", "err", err)
	}
	return out
}

// addLinks signs a GET of every output, valid for the dataset's expiry or until the signing
// credentials expire, whichever is first, and says so in the notice.
func (h *Notify) addLinks(ctx context.Context, log *slog.Logger, n *notify.Notice) {
	if h.cfg.Presigner == nil {
		log.WarnContext(ctx, "notify: the dataset wants download links but no presigner is configured")
		return
	}
	now := time.Now().UTC()
	expires := now.Add(n.LinkExpiry)
	if h.cfg.Credentials != nil {
		creds, err := h.cfg.Credentials.Retrieve(ctx)
		if err != nil {
			log.WarnContext(ctx, "notify: no credentials to sign download links", "err", err)
			return
		}
		if creds.CanExpire && creds.Expires.Before(expires) {
			expires = creds.Expires.UTC()
		}
	}
	valid := expires.Sub(now).Truncate(time.Second)
	if valid < time.Minute {
		log.WarnContext(ctx, "notify: the signing credentials expire within a minute; no download links", "expires", expires)
		return
	}
	for i := range n.Files {
		for j := range n.Files[i].Outputs {
			o := &n.Files[i].Outputs[j]
			req, err := h.cfg.Presigner.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(n.Bucket), Key: aws.String(o.Key)},
				s3.WithPresignExpires(valid))
			if err != nil {
				log.WarnContext(ctx, "notify: sign a download link", "key", o.Key, "err", err)
				continue
			}
			o.Link, o.LinkExpires = req.URL, now.Add(valid)
		}
	}
	if len(n.Files) > 0 {
		n.File = n.Files[0]
	}
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
