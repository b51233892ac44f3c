package inspect

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/ferrygw/ferry/pipeline/tracking"
)

// States of a file, in the order a file reaches them (File.State is the furthest).
const (
	StateReceived  = "received"  // arrived; not processed (yet): no route, or on its way
	StateWaiting   = "waiting"   // held for its batch marker or its checksum sidecar
	StateProcessed = "processed" // outputs written, notice not (yet) sent
	StateRejected  = "rejected"  // quarantined, notice not (yet) sent
	StateCopy      = "copy"      // a copy of content already processed: nothing to do
	StateNotified  = "notified"  // the notice went out (Outcome says which)
)

// File is one received file (one version of an object) and how far it got.
type File struct {
	FileID     string    `json:"file_id"`
	Bucket     string    `json:"bucket"`
	Key        string    `json:"key"`
	ETag       string    `json:"etag,omitempty"`
	Size       int64     `json:"size"`
	User       string    `json:"user,omitempty"`
	Protocol   string    `json:"protocol,omitempty"`
	TransferID string    `json:"transfer_id,omitempty"`
	Received   time.Time `json:"received"`
	Route      string    `json:"route,omitempty"` // empty: no route takes it
	Dataset    string    `json:"dataset,omitempty"`
	Role       string    `json:"role,omitempty"` // "marker" (of a batch) or "sidecar" (a checksum)

	State string `json:"state"`
	// WaitingFor says what a waiting file waits for: "marker *.done" or "sidecar KEY".
	WaitingFor string `json:"waiting_for,omitempty"`
	// Outcome is processed, rejected or copy once the transform is done with the file.
	Outcome   string    `json:"outcome,omitempty"`
	Done      time.Time `json:"done,omitzero"` // when the outcome was reached
	Outputs   int       `json:"outputs,omitempty"`
	Records   int64     `json:"records,omitempty"`
	Line      int64     `json:"line,omitempty"`       // the rejected line, when known
	Batch     string    `json:"batch,omitempty"`      // the file id of its batch (the marker's)
	Notified  time.Time `json:"notified,omitzero"`    // when its notice went out
	MessageID string    `json:"message_id,omitempty"` // the notice's message id
}

// Query selects files: received at or after Since (and before Until; zero = now), optionally
// of one user or one dataset.
type Query struct {
	Since, Until  time.Time
	User, Dataset string
}

// Status lists the files received in q's period, oldest first, from the status records alone
// (one listing per day, no read per file).
func (in *Inspector) Status(ctx context.Context, q Query) ([]File, error) {
	until := q.Until
	if until.IsZero() {
		until = in.cfg.Now()
	}
	if q.Since.After(until) {
		return nil, fmt.Errorf("status: since %s is after %s", q.Since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	if days := until.Sub(q.Since); days > 366*24*time.Hour {
		return nil, fmt.Errorf("status: a period of %s is too long (the records are kept for the ledger's lifetime)", days)
	}
	groups := map[string][]tracking.Record{}
	var order []string
	for day := startOfDay(q.Since); !day.After(until); day = day.Add(24 * time.Hour) {
		err := in.recs.Day(ctx, tracking.Day(day), func(r tracking.Record) error {
			if _, ok := groups[r.FileID]; !ok {
				order = append(order, r.FileID)
			}
			groups[r.FileID] = append(groups[r.FileID], r)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
	}
	var out []File
	for _, id := range order {
		f, ok := fold(groups[id])
		if !ok || f.Received.Before(q.Since) || f.Received.After(until) {
			continue // received before the period (a later step landed in it), or not seen arriving
		}
		if q.User != "" && f.User != q.User || q.Dataset != "" && f.Dataset != q.Dataset {
			continue
		}
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Received.Equal(out[j].Received) {
			return out[i].Received.Before(out[j].Received)
		}
		return out[i].Key < out[j].Key
	})
	return out, nil
}

func startOfDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// fold merges one file's records into its File; ok is false without its received record.
func fold(recs []tracking.Record) (File, bool) {
	var f File
	seen := false
	rank := 0
	for _, r := range recs {
		switch r.Kind {
		case tracking.KindReceived:
			seen = true
			f.FileID, f.Bucket, f.Key, f.ETag, f.Size = r.FileID, r.Bucket, r.Key, r.ETag, r.Size
			f.User, f.Protocol, f.TransferID, f.Received = r.User, r.Protocol, r.TransferID, r.Time
			f.Route, f.Dataset, f.Role = r.Route, r.Dataset, r.Role
		case tracking.KindWaiting:
			if rank < 1 {
				rank = 1
				f.WaitingFor = r.For + " " + r.What
			}
		case tracking.KindProcessed, tracking.KindRejected, tracking.KindCopy:
			// Several outcomes only after a crash redid the work: the latest counts.
			if rank < 2 || r.Time.After(f.Done) {
				rank = max(rank, 2)
				f.Outcome, f.Done, f.Outputs, f.Records, f.Line = r.Kind, r.Time, r.Outputs, r.Records, r.Line
				if r.Batch != "" {
					f.Batch = r.Batch
				}
			}
		case tracking.KindNotified:
			if f.Notified.IsZero() || r.Time.Before(f.Notified) {
				f.Notified, f.MessageID = r.Time, r.MessageID
				if f.Dataset == "" {
					f.Dataset = r.Dataset
				}
				if r.Batch != "" {
					f.Batch = r.Batch
				}
			}
		}
	}
	switch {
	case !f.Notified.IsZero():
		f.State = StateNotified
		if f.Outcome == "" { // the notice's record landed, the transform's did not
			f.Outcome = StateProcessed
		}
	case f.Outcome != "":
		f.State = f.Outcome
	case rank == 1:
		f.State = StateWaiting
	default:
		f.State = StateReceived
	}
	if f.State != StateWaiting {
		f.WaitingFor = ""
	}
	return f, seen
}

// Describe says in a few words where f is: "processed, notified", "waiting for marker
// *.done", "received (no route)".
func (f File) Describe() string {
	var s string
	switch f.State {
	case StateWaiting:
		s = "waiting for " + f.WaitingFor
		if w, ok := strings.CutPrefix(f.WaitingFor, tracking.ForSidecar+" "); ok {
			s = "waiting for sidecar " + path.Base(w)
		}
	case StateReceived:
		s = "received"
		switch {
		case f.Role == tracking.RoleSidecar:
			s = "received (checksum sidecar)"
		case f.Route == "":
			s = "received (no route)"
		default:
			s = "received, not processed yet"
		}
	case StateCopy:
		s = "copy of content already processed"
	case StateNotified:
		s = outcomeText(f) + ", notified"
	default:
		s = outcomeText(f)
	}
	return s
}

func outcomeText(f File) string {
	switch f.Outcome {
	case StateRejected:
		if f.Role == tracking.RoleMarker {
			return fmt.Sprintf("completed its batch of %d, with rejections", f.Outputs)
		}
		if f.Line > 0 {
			return fmt.Sprintf("rejected (line %d)", f.Line)
		}
		return "rejected"
	case StateCopy:
		return "copy of content already processed"
	}
	if f.Role == tracking.RoleMarker {
		return fmt.Sprintf("completed its batch of %d", f.Outputs)
	}
	if f.Records > 0 {
		return fmt.Sprintf("processed (%d records)", f.Records)
	}
	return "processed"
}
