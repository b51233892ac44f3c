package handler

import (
	"context"
	"log/slog"
	"time"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/route"
	"github.com/ferrygw/ferry/pipeline/tracking"
)

// The transform's status records (package tracking): one per step of each file, so `ferry
// status` lists a day's files by listing alone. They are written with the ledger's client
// under its prefix; a record that cannot be written is logged, never a failed delivery (the
// file's processing matters more than its bookkeeping).

// received is the first record of a file: who sent it, over which protocol, and which route
// (if any) takes it; role marks a batch marker or a sidecar (what: the sidecar's input).
func (h *Transform) received(in input, r *route.Route, role, what string) tracking.Record {
	rec := h.step(in, tracking.Record{Kind: tracking.KindReceived, Role: role, What: what})
	rec.Time = in.receivedAt()
	rec.Bucket, rec.Key, rec.ETag, rec.Size = in.Bucket, in.Key, in.ETag, in.Size
	rec.User, rec.Protocol, rec.TransferID = in.User, in.Protocol, in.TransferID
	if r != nil {
		rec.Route, rec.Dataset = r.Name, r.Dataset
		if u := r.UserOf(in.object()); u != "" {
			rec.User = u
		}
	}
	return rec
}

// step fills in the record of a step of in: its file id, day and the time now. A waiting
// record takes the time of arrival instead (waiting since then), so the redeliveries of a
// waiting file's event rewrite the same record.
func (h *Transform) step(in input, rec tracking.Record) tracking.Record {
	rec.FileID, rec.Day, rec.Time = factID(in), tracking.Day(in.receivedAt()), time.Now().UTC()
	if rec.Kind == tracking.KindWaiting {
		rec.Time = in.receivedAt().UTC()
	}
	return rec
}

func (in input) receivedAt() time.Time {
	if !in.Received.IsZero() {
		return in.Received
	}
	return in.At
}

// trackDetail records the outcome of each file of a published detail and, for a batch, of
// its marker (subject), as reached at finished.
func (h *Transform) trackDetail(ctx context.Context, log *slog.Logger, subject input, det *event.FileDetail, finished time.Time) {
	now := finished
	batch := ""
	if det.Marker != "" {
		batch = det.ID
		kind := tracking.KindProcessed
		if det.Rejected() {
			kind = tracking.KindRejected
		}
		rec := h.step(subject, tracking.Record{Kind: kind, Batch: batch, Outputs: len(det.Files)})
		rec.Time = now
		h.track(ctx, log, rec)
	}
	for _, f := range det.Files {
		received := f.Received
		if received.IsZero() {
			received = subject.receivedAt()
		}
		rec := tracking.Record{FileID: tracking.FileID(det.Bucket, f.Key, f.ETag), Day: tracking.Day(received), Time: now, Batch: batch}
		if f.Quarantine != "" || f.Reason != "" {
			rec.Kind, rec.Line = tracking.KindRejected, f.Line
		} else {
			rec.Kind, rec.Outputs, rec.Records = tracking.KindProcessed, len(f.Outputs), f.Records
		}
		h.track(ctx, log, rec)
	}
}

func (h *Transform) track(ctx context.Context, log *slog.Logger, rec tracking.Record) {
	if err := h.cfg.Ledger.Tracker().Put(ctx, rec); err != nil {
		log.WarnContext(ctx, "transform: status record", "kind", rec.Kind, "err", err)
	}
}
