package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/ferrygw/ferry/pipeline/bus"
	"github.com/ferrygw/ferry/pipeline/event"
)

// logged is one event of the embedded default's log, decoded by kind.
type logged struct {
	env  event.Envelope
	s3   *event.S3ObjectDetail
	gw   *event.GatewayDetail
	file *event.FileDetail
}

// readLog reads the events of the embedded event log (what compaction kept) that mention one
// of needles (a key, a transfer id), or nothing on AWS. It only reads, so `ferry serve` may be
// writing the log meanwhile; only the matching events are decoded and kept.
func (in *Inspector) readLog(needles ...string) ([]logged, error) {
	if in.cfg.EventsDir == "" || len(needles) == 0 {
		return nil, nil
	}
	var forms [][]byte
	for _, n := range needles {
		forms = append(forms, jsonForms(n)...)
	}
	var out []logged
	err := bus.Follow(context.Background(), in.cfg.EventsDir, false, time.Second, func(_ uint64, raw []byte) error {
		if !slices.ContainsFunc(forms, func(f []byte) bool { return bytes.Contains(raw, f) }) {
			return nil
		}
		env, err := event.DecodeEnvelope(raw)
		if err != nil {
			return nil // not an event: nothing to tell
		}
		l := logged{env: env}
		switch env.Source {
		case event.SourceS3, event.SourceRedrive:
			if e, err := event.DecodeS3(raw); err == nil {
				l.s3 = &e.Detail
			}
		case event.SourceGateway:
			if e, err := event.DecodeGateway(raw); err == nil {
				l.gw = &e.Detail
			}
		case event.SourcePipeline:
			if e, err := event.DecodeFile(raw); err == nil {
				l.file = &e.Detail
			}
		}
		if l.s3 != nil || l.gw != nil || l.file != nil {
			out = append(out, l)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	return out, nil
}

// jsonForms is s as it appears inside a JSON string, HTML-escaped (json.Marshal's default)
// and not.
func jsonForms(s string) [][]byte {
	var forms [][]byte
	for _, html := range []bool{true, false} {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(html)
		_ = enc.Encode(s)
		f := bytes.TrimSuffix(bytes.TrimSpace(b.Bytes()), []byte(`"`))
		forms = append(forms, bytes.TrimPrefix(f, []byte(`"`)))
	}
	return forms
}

// about reports whether l concerns bucket/key (of version etag, or transfer tid), and its step.
func (l logged) about(bucket, key, etag, tid string) (Step, bool) {
	switch {
	case l.s3 != nil:
		if l.s3.Bucket.Name != bucket || l.s3.Object.Key != key {
			return Step{}, false
		}
		s := l.step()
		if etag != "" && l.env.DetailType == event.DetailTypeObjectCreated && l.s3.Object.ETag != etag {
			s.Other = true
			s.What += " (another version)"
		}
		return s, true
	case l.gw != nil:
		if tid != "" && l.gw.TransferID == tid {
			return l.step(), true
		}
		if l.gw.Bucket == bucket && l.gw.Key == key {
			s := l.step()
			if tid != "" {
				s.Other = true
				s.What += " (another upload)"
			}
			return s, true
		}
	case l.file != nil:
		if l.file.Bucket != bucket {
			return Step{}, false
		}
		if l.file.Marker == key {
			return l.step(), true
		}
		for _, f := range l.file.Files {
			if f.Key == key && (etag == "" || f.ETag == etag) {
				return l.step(), true
			}
		}
	}
	return Step{}, false
}

// step says what l was, in a line.
func (l logged) step() Step {
	s := Step{Time: l.env.Time}
	switch {
	case l.s3 != nil:
		s.Source, s.rank = "s3", 1
		o := l.s3.Object
		if l.env.DetailType == event.DetailTypeObjectCreated {
			size := int64(0)
			if o.Size != nil {
				size = *o.Size
			}
			s.What = fmt.Sprintf("Object Created by %s, %s, etag %s, requester %s", l.s3.Reason, humanSize(size), o.ETag, l.s3.Requester)
		} else {
			s.What = fmt.Sprintf("Object Deleted by %s, requester %s", l.s3.Reason, l.s3.Requester)
		}
		if l.s3.SourceIPAddress != "" {
			s.What += " from " + l.s3.SourceIPAddress
		}
	case l.gw != nil:
		s.Source, s.rank = "gateway", 2
		g := l.gw
		s.What = fmt.Sprintf("%s: %s over %s from %s, %s, transfer %s", l.env.DetailType, g.User, g.Protocol, g.ClientAddress,
			humanSize(g.Bytes), g.TransferID)
		if g.FailureReason != "" {
			s.What += ": " + g.FailureReason
		}
		if !g.EndTime.IsZero() {
			s.Time = g.EndTime // the envelope's time has whole seconds
		}
	case l.file != nil:
		s.Source, s.rank = "pipeline", 6
		s.What = fmt.Sprintf("%s by route %s for dataset %s", l.env.DetailType, l.file.Route, l.file.Dataset)
		if l.file.Marker != "" {
			s.What += fmt.Sprintf(" (batch of %d, marker %s)", len(l.file.Files), l.file.Marker)
		}
	}
	return s
}

// lastCreated is the etag of the last Object Created event of bucket/key in the log.
func lastCreated(log []logged, bucket, key string) string {
	etag := ""
	for _, l := range log {
		if l.s3 != nil && l.env.DetailType == event.DetailTypeObjectCreated && l.s3.Bucket.Name == bucket && l.s3.Object.Key == key {
			etag = l.s3.Object.ETag
		}
	}
	return etag
}

// humanSize is a size as people read it: "27 B", "1.5 MiB".
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
