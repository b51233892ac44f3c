package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/handler"
	"github.com/ferrygw/ferry/pipeline/s3status"
	"github.com/ferrygw/ferry/pipeline/tracking"
)

// Story is one file's way through Ferry: who uploaded it, the events, what the transform made
// of it and which notice went out.
type Story struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	FileID string `json:"file_id,omitempty"`
	// Exists reports whether the object is there now; when it is gone the story is told from
	// the records.
	Exists       bool      `json:"exists"`
	ETag         string    `json:"etag,omitempty"`
	Size         int64     `json:"size"`
	LastModified time.Time `json:"last_modified,omitzero"`
	// Who, over what, from where: the gateway's object metadata (ferry-*), else the pipeline's
	// records (for an S3-native upload, the user the route takes from the key).
	User string `json:"user,omitempty"`
	// UserFromKey: no gateway metadata named the uploader (an S3-native upload); User is the
	// one the route takes from the key.
	UserFromKey bool   `json:"user_from_key,omitempty"`
	Protocol    string `json:"protocol,omitempty"`
	Client      string `json:"client,omitempty"`
	TransferID  string `json:"transfer_id,omitempty"`
	SHA256      string `json:"sha256,omitempty"`

	Events  []Step   `json:"events"`
	Outcome *Outcome `json:"outcome,omitempty"`
	Notice  *Notice  `json:"notice,omitempty"`
	Notes   []string `json:"notes,omitempty"`

	done time.Time // when the status records say the transform finished with it
}

// Step is one event in a story.
type Step struct {
	Time time.Time `json:"time"`
	// Source is where the step is known from: "s3", "gateway", "pipeline" (events of the
	// embedded default's log) or "record" (the pipeline's status records, kept everywhere).
	Source string `json:"source"`
	What   string `json:"what"`
	// Other marks a step of another version of the same key (an earlier or later upload).
	Other bool `json:"other_version,omitempty"`
	rank  int
}

// Outcome is what the transform made of the file.
type Outcome struct {
	// State: processed, rejected, copy (of content already processed), waiting, pending (being
	// processed), unrouted (no route takes it), none (not seen by the pipeline yet).
	State      string             `json:"state"`
	At         time.Time          `json:"at,omitzero"`
	Route      string             `json:"route,omitempty"`
	Dataset    string             `json:"dataset,omitempty"`
	Outputs    []event.FileOutput `json:"outputs,omitempty"`
	Records    int64              `json:"records,omitempty"`
	Quarantine string             `json:"quarantine,omitempty"`
	Reason     string             `json:"reason,omitempty"`
	Line       int64              `json:"line,omitempty"`
	Marker     string             `json:"marker,omitempty"` // the batch's marker, for a file processed in a batch
	Waiting    string             `json:"waiting,omitempty"`
}

// Notice is the notification that told the file's audience.
type Notice struct {
	Dataset   string    `json:"dataset"`
	Sent      time.Time `json:"sent"`
	MessageID string    `json:"message_id,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	EventID   string    `json:"event_id,omitempty"` // the pipeline event it was written from
}

// ErrNotFound is returned when neither an object, nor records, nor events know the reference.
var ErrNotFound = errors.New("no such file or transfer")

// Trace tells the story of ref: "s3://BUCKET/KEY", a KEY in the configured bucket, or a
// transfer id (an argument without "/" is tried as a transfer id first). A transfer id can
// name several objects (a rename keeps it): one story each.
func (in *Inspector) Trace(ctx context.Context, ref string) ([]Story, error) {
	bucket, key, isURL := strings.Cut(strings.TrimPrefix(ref, "s3://"), "/")
	if !strings.HasPrefix(ref, "s3://") {
		isURL = false
	}
	if !isURL && !strings.Contains(ref, "/") {
		stories, err := in.traceTransfer(ctx, ref)
		if err != nil || len(stories) > 0 {
			return stories, err
		}
	}
	if !isURL {
		bucket, key = in.cfg.Bucket, ref
	}
	if bucket == "" || key == "" {
		return nil, fmt.Errorf("trace %q: want KEY, s3://BUCKET/KEY or a transfer id", ref)
	}
	log, err := in.readLog(key)
	if err != nil {
		return nil, err
	}
	st, found, err := in.traceKey(ctx, bucket, key, "", log)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("trace %s: %w", ref, ErrNotFound)
	}
	return []Story{st}, nil
}

// traceTransfer finds the objects of transfer id tid (status records, and the gateway's
// events in the embedded log) and tells each one's story; a transfer that failed has a story
// of its events alone.
func (in *Inspector) traceTransfer(ctx context.Context, tid string) ([]Story, error) {
	log, err := in.readLog(tid)
	if err != nil {
		return nil, err
	}
	type obj struct{ bucket, key, etag string }
	var objs []obj
	seen := map[[2]string]int{} // bucket, key -> index in objs
	add := func(o obj) {
		k := [2]string{o.bucket, o.key}
		if i, ok := seen[k]; ok {
			if objs[i].etag == "" {
				objs[i].etag = o.etag
			}
			return
		}
		seen[k] = len(objs)
		objs = append(objs, o)
	}
	files, err := in.recs.Transfer(ctx, tid)
	if err != nil {
		return nil, fmt.Errorf("trace %s: %w", tid, err)
	}
	for _, f := range files {
		at, _ := time.Parse(time.DateOnly, f.Day)
		recs, err := in.recs.File(ctx, f.FileID, at)
		if err != nil {
			return nil, fmt.Errorf("trace %s: %w", tid, err)
		}
		for _, r := range recs {
			if r.Kind == tracking.KindReceived {
				add(obj{r.Bucket, r.Key, r.ETag})
			}
		}
	}
	var failed []logged
	for _, l := range log {
		if l.gw == nil || l.gw.TransferID != tid {
			continue
		}
		switch l.env.DetailType {
		case event.DetailTypeTransferCompleted:
			add(obj{l.gw.Bucket, l.gw.Key, ""})
		case event.DetailTypeTransferFailed:
			failed = append(failed, l)
		}
	}
	var out []Story
	for _, o := range objs {
		log, err := in.readLog(o.key, tid)
		if err != nil {
			return nil, err
		}
		st, found, err := in.traceKey(ctx, o.bucket, o.key, o.etag, log)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, st)
		}
	}
	for _, l := range failed {
		st := Story{Bucket: l.gw.Bucket, Key: l.gw.Key, User: l.gw.User, Protocol: l.gw.Protocol, Client: l.gw.ClientAddress, TransferID: tid}
		st.Events = append(st.Events, l.step())
		st.Notes = append(st.Notes, "the upload failed ("+l.gw.FailureReason+"): no object was stored")
		out = append(out, st)
	}
	return out, nil
}

// traceKey tells the story of bucket/key: of the object there now, else of its last version
// the records or the log know (etag, when the caller knows the version it wants).
func (in *Inspector) traceKey(ctx context.Context, bucket, key, etag string, log []logged) (Story, bool, error) {
	st := Story{Bucket: bucket, Key: key, Events: []Step{}}
	head, err := in.cfg.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	switch {
	case err == nil:
		cur := strings.Trim(aws.ToString(head.ETag), `"`)
		if etag == "" || etag == cur {
			st.Exists, st.ETag, st.Size, st.LastModified = true, cur, aws.ToInt64(head.ContentLength), aws.ToTime(head.LastModified).UTC()
			st.User, st.Protocol = meta(head.Metadata, "ferry-user"), meta(head.Metadata, "ferry-protocol")
			st.Client, st.TransferID, st.SHA256 = meta(head.Metadata, "ferry-client"), meta(head.Metadata, "ferry-transfer-id"), meta(head.Metadata, "ferry-sha256")
			if st.SHA256 == "" && aws.ToInt32(head.TagCount) > 0 {
				st.SHA256 = in.tag(ctx, bucket, key, "ferry-sha256")
			}
		} else {
			st.Notes = append(st.Notes, "the object at this key has been replaced since (etag "+cur+"): this is the earlier version's story")
		}
	case s3status.NoSuchKey(err):
	default:
		return st, false, fmt.Errorf("trace s3://%s/%s: %w", bucket, key, err)
	}
	if !st.Exists {
		if etag == "" {
			etag = lastCreated(log, bucket, key)
		}
		var rec *tracking.Record
		if etag == "" {
			if rec, err = in.searchReceived(ctx, bucket, key); err != nil {
				return st, false, err
			}
			if rec != nil {
				etag = rec.ETag
			}
		}
		if etag != "" && len(st.Notes) == 0 {
			st.Notes = append(st.Notes, "the object is no longer there: its story is told from the records")
		}
		st.ETag = etag
	}
	if st.ETag != "" {
		st.FileID = tracking.FileID(bucket, key, st.ETag)
	}
	for _, l := range log {
		if s, ok := l.about(bucket, key, st.ETag, st.TransferID); ok {
			st.Events = append(st.Events, s)
			if l.gw != nil && st.TransferID == "" && l.gw.Key == key && l.env.DetailType == event.DetailTypeTransferCompleted {
				st.TransferID = l.gw.TransferID
			}
		}
	}
	if st.FileID != "" {
		if err := in.fromRecords(ctx, &st); err != nil {
			return st, false, err
		}
		if err := in.fromLedger(ctx, &st); err != nil {
			return st, false, err
		}
	}
	sort.SliceStable(st.Events, func(i, j int) bool {
		a, b := st.Events[i], st.Events[j]
		ta, tb := a.Time.Truncate(time.Second), b.Time.Truncate(time.Second)
		if !ta.Equal(tb) {
			return ta.Before(tb)
		}
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		return a.Time.Before(b.Time)
	})
	found := st.Exists || len(st.Events) > 0 || st.Outcome != nil
	return st, found, nil
}

// fromRecords adds the status records' steps, and who uploaded when the metadata did not say.
func (in *Inspector) fromRecords(ctx context.Context, st *Story) error {
	around := st.LastModified
	if around.IsZero() {
		around = in.cfg.Now()
		for _, e := range st.Events {
			if e.Source == "s3" && !e.Other {
				around = e.Time
			}
		}
	}
	recs, err := in.recs.File(ctx, st.FileID, around)
	if err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	if len(recs) == 0 && !st.Exists {
		// Last try for a gone object: its records, by key.
		if r, err := in.searchReceived(ctx, st.Bucket, st.Key); err != nil {
			return err
		} else if r != nil && r.FileID == st.FileID {
			at, _ := time.Parse(time.DateOnly, r.Day)
			if recs, err = in.recs.File(ctx, st.FileID, at); err != nil {
				return fmt.Errorf("trace: %w", err)
			}
		}
	}
	for _, r := range recs {
		st.Events = append(st.Events, recordStep(r))
		switch r.Kind {
		case tracking.KindProcessed, tracking.KindRejected, tracking.KindCopy:
			st.done = r.Time
		}
		if r.Kind != tracking.KindReceived {
			continue
		}
		if st.User == "" && r.User != "" {
			st.User, st.UserFromKey = r.User, true
		}
		if st.Protocol == "" {
			st.Protocol = r.Protocol
		}
		if st.TransferID == "" {
			st.TransferID = r.TransferID
		}
		if st.Size == 0 {
			st.Size = r.Size
		}
		if st.Outcome == nil {
			switch {
			case r.Role == tracking.RoleSidecar:
				st.Outcome = &Outcome{State: "sidecar", Waiting: r.What}
			case r.Route == "":
				st.Outcome = &Outcome{State: "unrouted"}
			}
		}
	}
	for _, r := range recs {
		if r.Kind == tracking.KindWaiting && (st.Outcome == nil || st.Outcome.State == "waiting") {
			st.Outcome = &Outcome{State: "waiting", Waiting: r.For + " " + r.What}
		}
		if r.Kind == tracking.KindCopy {
			st.Outcome = &Outcome{State: StateCopy, At: r.Time}
		}
	}
	return nil
}

// fromLedger reads what the transform recorded for the file (its FileDetail, or its batch's)
// and the notice the notify handler sent for it.
func (in *Inspector) fromLedger(ctx context.Context, st *Story) error {
	e, ok, err := in.ledger.Get(ctx, handler.ObjectFact(st.FileID))
	if err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	if !ok {
		if st.Outcome == nil && (st.Exists || len(st.Events) > 0) {
			st.Outcome = &Outcome{State: "none"}
		}
		return nil
	}
	if e.State != "done" {
		st.Outcome = &Outcome{State: "pending", At: e.At}
		until := ""
		if !e.Until.IsZero() {
			until = ", until " + e.Until.Format(time.RFC3339)
		}
		st.Notes = append(st.Notes, "a delivery has been processing it since "+e.At.Format(time.RFC3339)+until+
			"; if it died, the next delivery takes over after that")
		return nil
	}
	detailID := st.FileID
	var member handler.BatchMember
	if json.Unmarshal(e.Result, &member) == nil && member.Batch != "" {
		if member.BatchID == "" {
			st.Outcome = &Outcome{State: StateProcessed, At: e.At, Marker: member.Batch}
			return nil
		}
		detailID = member.BatchID
		if e, ok, err = in.ledger.Get(ctx, handler.ObjectFact(detailID)); err != nil {
			return fmt.Errorf("trace: %w", err)
		}
	}
	var d event.FileDetail
	if !ok || len(e.Result) == 0 || string(e.Result) == "null" || json.Unmarshal(e.Result, &d) != nil || d.ID == "" {
		if st.Outcome == nil || st.Outcome.State != StateCopy {
			st.Outcome = &Outcome{State: "none", At: e.At}
			st.Notes = append(st.Notes, "the transform published nothing for it (the object was replaced before it was read)")
		}
		return nil
	}
	at := e.At // when the ledger marked it done, unless the status records say when it finished
	if !st.done.IsZero() {
		at = st.done
	}
	o := &Outcome{State: StateProcessed, At: at, Route: d.Route, Dataset: d.Dataset, Marker: d.Marker}
	for _, f := range d.Files {
		if f.Key != st.Key || f.ETag != st.ETag {
			continue
		}
		o.Outputs, o.Records, o.Quarantine, o.Reason, o.Line = f.Outputs, f.Records, f.Quarantine, f.Reason, f.Line
		if f.Quarantine != "" || f.Reason != "" {
			o.State = StateRejected
		}
		if st.SHA256 == "" {
			st.SHA256 = f.SHA256
		}
		if st.User == "" && f.User != "" {
			st.User, st.UserFromKey = f.User, true
		}
	}
	if d.Marker == st.Key { // the story of a marker: its batch
		o.State = StateProcessed
		if d.Rejected() {
			o.State = StateRejected
		}
	}
	st.Outcome = o
	n, ok, err := in.ledger.Get(ctx, handler.NoticeFact(d.ID))
	if err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	if ok && n.State == "done" {
		var sent handler.SentRecord
		_ = json.Unmarshal(n.Result, &sent)
		notice := &Notice{Dataset: sent.Dataset, Sent: sent.Sent, MessageID: sent.MessageID, Subject: sent.Subject, EventID: sent.Event}
		if notice.Dataset == "" {
			notice.Dataset = d.Dataset
		}
		if notice.Sent.IsZero() {
			notice.Sent = n.At
		}
		st.Notice = notice
	}
	return nil
}

// searchReceived finds the latest received record of bucket/key in the last SearchDays days
// (listing only): how a gone object's version is found without an event log.
func (in *Inspector) searchReceived(ctx context.Context, bucket, key string) (*tracking.Record, error) {
	var best *tracking.Record
	now := in.cfg.Now()
	for d := 0; d < in.cfg.SearchDays; d++ {
		err := in.recs.Day(ctx, tracking.Day(now.Add(-time.Duration(d)*24*time.Hour)), func(r tracking.Record) error {
			if r.Kind == tracking.KindReceived && r.Bucket == bucket && r.Key == key && (best == nil || r.Time.After(best.Time)) {
				r := r
				best = &r
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
		if best != nil {
			return best, nil
		}
	}
	return nil, nil
}

func (in *Inspector) tag(ctx context.Context, bucket, key, name string) string {
	out, err := in.cfg.S3.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return "" // tags are a nicety here: the transform's digest stands in
	}
	for _, t := range out.TagSet {
		if aws.ToString(t.Key) == name {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// meta reads a ferry-* metadata value as the gateway writes it (RFC 2047 for non-ASCII).
func meta(m map[string]string, k string) string {
	v := m[k]
	if strings.HasPrefix(v, "=?") {
		if d, err := new(mime.WordDecoder).DecodeHeader(v); err == nil {
			return d
		}
	}
	return v
}

func recordStep(r tracking.Record) Step {
	s := Step{Time: r.Time, Source: "record"}
	switch r.Kind {
	case tracking.KindReceived:
		s.rank = 3
		switch {
		case r.Role == tracking.RoleMarker:
			s.What = fmt.Sprintf("received by the transform: the batch marker of route %s (dataset %s)", r.Route, r.Dataset)
		case r.Role == tracking.RoleSidecar:
			s.What = "received by the transform: the checksum sidecar of " + r.What
		case r.Route == "":
			s.What = "received by the transform: no route takes it"
		default:
			s.What = fmt.Sprintf("received by the transform: route %s, dataset %s", r.Route, r.Dataset)
		}
	case tracking.KindWaiting:
		s.rank = 4
		s.What = "waiting for its " + r.For + " " + r.What
	case tracking.KindProcessed, tracking.KindRejected:
		if r.Batch == r.FileID { // a batch's marker
			s.rank = 5
			s.What = "completed its batch of " + plural(r.Outputs, "file")
			if r.Kind == tracking.KindRejected {
				s.What += ", with rejected files"
			}
			break
		}
		if r.Kind == tracking.KindRejected {
			s.rank = 5
			s.What = "rejected and quarantined"
			if r.Line > 0 {
				s.What += fmt.Sprintf(" (line %d)", r.Line)
			}
			break
		}
		s.rank = 5
		s.What = fmt.Sprintf("processed: %s", plural(r.Outputs, "output"))
		if r.Records > 0 {
			s.What += fmt.Sprintf(", %s", plural(int(r.Records), "record"))
		}
		if r.Batch != "" {
			s.What += " (in its batch)"
		}
	case tracking.KindCopy:
		s.rank = 5
		s.What = "a copy of content already processed: not processed again"
	case tracking.KindNotified:
		s.rank = 7
		s.What = "notice sent to dataset " + r.Dataset
		if r.MessageID != "" {
			s.What += ", message " + r.MessageID
		}
	}
	return s
}

func plural(n int, one string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %ss", n, one)
}
