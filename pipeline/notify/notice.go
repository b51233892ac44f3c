package notify

import (
	"path"
	"time"

	"github.com/ferrygw/ferry/pipeline/event"
)

// Kinds of notice: one per processed file, one per rejected file, one per completed batch.
const (
	KindProcessed = "processed"
	KindRejected  = "rejected"
	KindBatch     = "batch"
)

// Kinds lists the notice kinds, each with its own subject, body and SMS templates.
var Kinds = []string{KindProcessed, KindRejected, KindBatch}

// Notice is what a notification says: the data its templates see (as "."), and, as JSON, the
// message machine subscribers parse. Field names are the templates' vocabulary: a template
// naming a field not here is refused when the routes file loads.
type Notice struct {
	Version int    `json:"version"` // of this JSON shape: 1
	Kind    string `json:"kind"`    // processed, rejected or batch
	// Status is "processed", or "rejected" when any file was (a batch may mix both).
	Status  string    `json:"status"`
	ID      string    `json:"id"` // stable for the fact: a redelivery has the same
	Dataset string    `json:"dataset"`
	Route   string    `json:"route"`
	User    string    `json:"user,omitempty"` // who sent the file(s); empty when unknown
	Bucket  string    `json:"bucket"`
	Time    time.Time `json:"time"` // when processing finished
	// File is the file of a single-file notice, the first file of a batch.
	File File `json:"-"`
	// Files are every file of the notice (one for a single-file notice), in key order, less
	// Omitted.
	Files []File `json:"files"`
	// Marker is the batch's completion marker (batch notices), MarkerURL its s3:// address.
	Marker    string `json:"marker,omitempty"`
	MarkerURL string `json:"marker_url,omitempty"`
	// Total, Processed and Rejected count the files of the notice, by outcome.
	Total     int `json:"total"`
	Processed int `json:"processed"`
	Rejected  int `json:"rejected"`
	// Omitted files are left out of Files to keep the message within SNS's size limit (a
	// batch of thousands of files); the counts still include them.
	Omitted int `json:"omitted,omitempty"`
	// LinkExpiry is how long the dataset's download links are valid (0: no links).
	LinkExpiry time.Duration `json:"-"`
	// Attributes are the SNS message attributes: the dataset's own plus dataset, user,
	// status, route and kind.
	Attributes map[string]string `json:"attributes,omitempty"`
}

// File is one input file of a notice.
type File struct {
	Key        string    `json:"key"`
	Name       string    `json:"name"` // base name of Key
	URL        string    `json:"url"`  // s3://bucket/key
	Size       int64     `json:"size"`
	SHA256     string    `json:"sha256,omitempty"`
	User       string    `json:"user,omitempty"`
	Protocol   string    `json:"protocol,omitempty"` // sftp, ftp, ftps: the gateway's; empty for S3-native uploads
	TransferID string    `json:"transfer_id,omitempty"`
	Received   time.Time `json:"received,omitzero"` // when the upload completed
	Status     string    `json:"status"`            // processed or rejected
	Records    int64     `json:"records,omitempty"` // rows written, when counted
	Outputs    []Output  `json:"outputs,omitempty"`
	// Reason says why the file was rejected, Line at which line of it (0: not line-based).
	Reason        string `json:"reason,omitempty"`
	Line          int64  `json:"line,omitempty"`
	Quarantine    string `json:"quarantine,omitempty"` // where the rejected file was kept
	QuarantineURL string `json:"quarantine_url,omitempty"`
}

// Output is one object the transforms wrote.
type Output struct {
	Key  string `json:"key"`
	Name string `json:"name"`
	URL  string `json:"url"` // s3://bucket/key
	Size int64  `json:"size"`
	// Link is a pre-signed HTTPS GET of the output, valid until LinkExpires, when the dataset
	// asks for download links; the reader needs no AWS credentials to open it.
	Link        string    `json:"link,omitempty"`
	LinkExpires time.Time `json:"link_expires,omitzero"`
}

// Rejected reports whether f was rejected.
func (f File) Rejected() bool { return f.Status == KindRejected }

// NewNotice builds the notice of a pipeline event: kind, counts, addresses, attributes.
func NewNotice(e event.FileEvent) Notice {
	d := e.Detail
	n := Notice{
		Version: 1, ID: d.ID, Dataset: d.Dataset, Route: d.Route, User: d.User, Bucket: d.Bucket,
		Time: e.Time.UTC(), Marker: d.Marker, Status: KindProcessed,
	}
	if n.Time.IsZero() {
		n.Time = time.Now().UTC().Truncate(time.Second)
	}
	if d.Marker != "" {
		n.MarkerURL = s3URL(d.Bucket, d.Marker)
	}
	for _, f := range d.Files {
		nf := File{
			Key: f.Key, Name: path.Base(f.Key), URL: s3URL(d.Bucket, f.Key), Size: f.Size, SHA256: f.SHA256,
			User: f.User, Protocol: f.Protocol, TransferID: f.TransferID, Received: f.Received.UTC(),
			Status: KindProcessed, Records: f.Records, Reason: f.Reason, Line: f.Line, Quarantine: f.Quarantine,
		}
		if nf.User == "" {
			nf.User = d.User
		}
		if f.Quarantine != "" {
			nf.QuarantineURL = s3URL(d.Bucket, f.Quarantine)
		}
		if f.Reason != "" || f.Quarantine != "" {
			nf.Status = KindRejected
			if nf.Reason == "" {
				nf.Reason = "rejected"
			}
			n.Rejected++
			n.Status = KindRejected
		} else {
			n.Processed++
		}
		for _, o := range f.Outputs {
			nf.Outputs = append(nf.Outputs, Output{Key: o.Key, Name: path.Base(o.Key), URL: s3URL(d.Bucket, o.Key), Size: o.Size})
		}
		n.Files = append(n.Files, nf)
	}
	n.Total = len(n.Files)
	if len(n.Files) > 0 {
		n.File = n.Files[0]
	}
	switch {
	case d.Marker != "" || len(n.Files) > 1:
		n.Kind = KindBatch
	case n.Status == KindRejected:
		n.Kind = KindRejected
	default:
		n.Kind = KindProcessed
	}
	n.Attributes = map[string]string{}
	for k, v := range d.Attributes {
		n.Attributes[k] = v
	}
	for k, v := range map[string]string{"dataset": d.Dataset, "user": d.User, "status": n.Status, "route": d.Route, "kind": n.Kind} {
		n.Attributes[k] = v // the fixed attributes win over a dataset's own
	}
	return n
}

func s3URL(bucket, key string) string { return "s3://" + bucket + "/" + key }
