package inspect

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteStory writes st for people to read.
func WriteStory(w io.Writer, st Story) error {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-10s %s\n", label, fmt.Sprintf(format, args...))
	}
	line("File", "s3://%s/%s", st.Bucket, st.Key)
	who := orUnknown(st.User)
	if st.UserFromKey {
		who += " (from the key: no gateway metadata, an S3-native upload)"
	}
	if st.Protocol != "" {
		who += " over " + strings.ToUpper(st.Protocol)
	}
	if st.Client != "" {
		who += " from " + st.Client
	}
	if st.TransferID != "" {
		who += ", transfer " + st.TransferID
	}
	line("Uploaded", "by %s", who)
	if !st.LastModified.IsZero() {
		line("At", "%s", stamp(st.LastModified))
	}
	if st.Exists || st.Size > 0 {
		line("Size", "%s (%d bytes)", humanSize(st.Size), st.Size)
	}
	if st.SHA256 != "" {
		line("SHA-256", "%s", st.SHA256)
	}
	if st.ETag != "" {
		line("ETag", "%s", st.ETag)
	}
	b.WriteString("\nEvents\n")
	if len(st.Events) == 0 {
		b.WriteString("  (none recorded)\n")
	}
	for _, e := range st.Events {
		fmt.Fprintf(&b, "  %s  %-8s  %s\n", stampMilli(e.Time), e.Source, e.What)
	}
	b.WriteString("\n")
	if o := st.Outcome; o != nil {
		writeOutcome(&b, st, o)
	}
	if n := st.Notice; n != nil {
		line("Notice", "sent %s to dataset %s", stamp(n.Sent), n.Dataset)
		if n.MessageID != "" {
			line("", "message id %s", n.MessageID)
		}
		if n.Subject != "" {
			line("", "%q", n.Subject)
		}
	} else if o := st.Outcome; o != nil && (o.State == StateProcessed || o.State == StateRejected) {
		line("Notice", "not sent (yet)")
	}
	for _, n := range st.Notes {
		line("Note", "%s", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeOutcome(b *strings.Builder, st Story, o *Outcome) {
	line := func(label, format string, args ...any) {
		fmt.Fprintf(b, "%-10s %s\n", label, fmt.Sprintf(format, args...))
	}
	by := ""
	if o.Route != "" {
		by = fmt.Sprintf(" by route %s (dataset %s)", o.Route, o.Dataset)
	}
	switch o.State {
	case StateProcessed:
		what := "processed"
		if o.Marker == st.Key {
			what = "completed its batch"
		}
		line("Outcome", "%s%s at %s", what, by, stamp(o.At))
		if o.Marker != "" && o.Marker != st.Key {
			line("", "in the batch completed by s3://%s/%s", st.Bucket, o.Marker)
		}
		if o.Records > 0 {
			line("", "%s", plural(int(o.Records), "record"))
		}
		for _, out := range o.Outputs {
			line("", "output s3://%s/%s (%s)", st.Bucket, out.Key, humanSize(out.Size))
		}
	case StateRejected:
		if o.Marker == st.Key {
			line("Outcome", "completed its batch, with rejected files%s at %s", by, stamp(o.At))
			return
		}
		line("Outcome", "rejected%s at %s", by, stamp(o.At))
		why := o.Reason
		if o.Line > 0 {
			why += fmt.Sprintf(" (line %d)", o.Line)
		}
		line("", "why: %s", why)
		if o.Quarantine != "" {
			line("", "kept in s3://%s/%s", st.Bucket, o.Quarantine)
		}
	case StateCopy:
		line("Outcome", "a copy of content already processed: not processed again")
	case "waiting":
		line("Outcome", "waiting for its %s", o.Waiting)
	case "pending":
		line("Outcome", "being processed (since %s)", stamp(o.At))
	case "unrouted":
		line("Outcome", "no route takes it: stored, not processed")
	case "sidecar":
		line("Outcome", "a checksum sidecar of %s: read when its input is processed", o.Waiting)
	default:
		line("Outcome", "not processed (yet)")
	}
}

// WriteStatus writes files as a table.
func WriteStatus(w io.Writer, files []File) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECEIVED\tUSER\tVIA\tSIZE\tFILE\tDATASET\tSTATE\tNOTIFIED")
	for _, f := range files {
		notified := "-"
		if !f.Notified.IsZero() {
			notified = f.Notified.UTC().Format(time.TimeOnly)
			if !sameDay(f.Notified, f.Received) {
				notified = f.Notified.UTC().Format(time.DateTime)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Received.UTC().Format(time.DateTime), orDash(f.User), orDash(f.Protocol),
			humanSize(f.Size), f.Key, orDash(f.Dataset), f.Describe(), notified)
	}
	return tw.Flush()
}

func sameDay(a, b time.Time) bool {
	return a.UTC().Format(time.DateOnly) == b.UTC().Format(time.DateOnly)
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// stampMilli shows milliseconds when the time has them: events' envelopes carry whole seconds
// (as EventBridge writes them), the records milliseconds.
func stampMilli(t time.Time) string {
	if t.Nanosecond() == 0 {
		return t.UTC().Format("2006-01-02 15:04:05    ")
	}
	return t.UTC().Format("2006-01-02 15:04:05.000")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown: no gateway metadata)"
	}
	return s
}
