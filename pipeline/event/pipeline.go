package event

import (
	"errors"
	"fmt"
	"time"
)

// SourcePipeline is the source of the events the transform handler publishes.
const SourcePipeline = "ferry.pipeline"

// Detail types of pipeline events.
const (
	DetailTypeFileProcessed = "File Processed"
	DetailTypeFileRejected  = "File Rejected"
)

// FileEvent is a pipeline event: source "ferry.pipeline", detail type "File Processed" or
// "File Rejected".
type FileEvent = Event[FileDetail]

// FileDetail says what became of one input file or of one batch (a route with a completion
// marker). A batch is "File Rejected" when any of its files was rejected; Files says which.
//
//	id           stable for the fact (derived from bucket, key and etag of the input, or of the
//	             marker for a batch), so a redelivered event is recognised downstream
//	route        route name; dataset and topic are the route's audience
//	user         who uploaded (object metadata ferry-user, else taken from the key)
//	transfer_id  the gateway's transfer id (object metadata ferry-transfer-id), when known
//	bucket       bucket of inputs and outputs
//	marker       key of the completion marker of a batch
//	marker_received  when the marker arrived
//	files        the inputs, each with its outputs or quarantine key and reason
//	attributes   the dataset's extra notification attributes
type FileDetail struct {
	ID         string `json:"id"`
	Route      string `json:"route"`
	Dataset    string `json:"dataset"`
	Topic      string `json:"topic,omitempty"`
	User       string `json:"user"`
	TransferID string `json:"transfer_id,omitempty"`
	Bucket     string `json:"bucket"`
	Marker     string `json:"marker,omitempty"`
	// MarkerReceived is when the marker arrived (so its records share its day).
	MarkerReceived time.Time    `json:"marker_received,omitzero"`
	Files          []FileResult `json:"files"`
	// Attributes are the dataset's extra notification attributes (SNS filter policies).
	Attributes map[string]string `json:"attributes,omitempty"`
}

// FileResult is one input file of a FileDetail.
type FileResult struct {
	Key        string       `json:"key"`
	ETag       string       `json:"etag"`
	Size       int64        `json:"size"`
	User       string       `json:"user,omitempty"`
	TransferID string       `json:"transfer_id,omitempty"`
	Protocol   string       `json:"protocol,omitempty"` // the gateway's (object metadata ferry-protocol)
	Received   time.Time    `json:"received,omitzero"`  // when the upload completed (its event's time)
	Outputs    []FileOutput `json:"outputs,omitempty"`
	Records    int64        `json:"records,omitempty"` // rows written by csv-to-jsonl, when counted
	SHA256     string       `json:"sha256,omitempty"`  // of the input's bytes, when read to the end
	Quarantine string       `json:"quarantine,omitempty"`
	Reason     string       `json:"reason,omitempty"` // why it was rejected
	Line       int64        `json:"line,omitempty"`   // the line that was rejected, when known
}

// FileOutput is one object the chain wrote.
type FileOutput struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
}

// Rejected reports whether any file of d was rejected.
func (d FileDetail) Rejected() bool {
	for _, f := range d.Files {
		if f.Quarantine != "" || f.Reason != "" {
			return true
		}
	}
	return false
}

// NewFileEvent builds the pipeline event for d: "File Rejected" when any file was rejected,
// else "File Processed". at is when processing finished (zero: now).
func NewFileEvent(d FileDetail, account, region string, at time.Time) (FileEvent, error) {
	dt := DetailTypeFileProcessed
	if d.Rejected() {
		dt = DetailTypeFileRejected
	}
	e := FileEvent{
		Version: EnvelopeVersion, ID: NewID(), DetailType: dt, Source: SourcePipeline,
		Account: account, Time: eventTime(at), Region: region,
		Resources: resources(BucketARN(d.Bucket)), Detail: d,
	}
	return e, ValidateFile(e)
}

// DecodeFile parses a File Processed / File Rejected event.
func DecodeFile(data []byte) (FileEvent, error) {
	env, err := DecodeEnvelope(data)
	if err != nil {
		return FileEvent{}, err
	}
	if env.Source != SourcePipeline {
		return FileEvent{}, fmt.Errorf("decode file event: source %q, want %q", env.Source, SourcePipeline)
	}
	if env.DetailType != DetailTypeFileProcessed && env.DetailType != DetailTypeFileRejected {
		return FileEvent{}, fmt.Errorf("decode file event: unsupported detail-type %q", env.DetailType)
	}
	e, err := As[FileDetail](env)
	if err != nil {
		return FileEvent{}, err
	}
	return e, ValidateFile(e)
}

// ValidateFile returns every problem of a pipeline event.
func ValidateFile(e FileEvent) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	d := e.Detail
	if e.Source != SourcePipeline {
		bad("source %q, want %q", e.Source, SourcePipeline)
	}
	if d.ID == "" {
		bad("missing detail.id")
	}
	if d.Route == "" {
		bad("missing detail.route")
	}
	if d.Dataset == "" {
		bad("missing detail.dataset")
	}
	if d.Bucket == "" {
		bad("missing detail.bucket")
	}
	if len(d.Files) == 0 {
		bad("no detail.files")
	}
	for i, f := range d.Files {
		if f.Key == "" {
			bad("detail.files[%d]: missing key", i)
		}
	}
	switch e.DetailType {
	case DetailTypeFileProcessed:
		if d.Rejected() {
			bad("File Processed lists a rejected file")
		}
	case DetailTypeFileRejected:
		if !d.Rejected() {
			bad("File Rejected lists no rejected file")
		}
	default:
		bad("detail-type %q is not a pipeline event", e.DetailType)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid file event %s: %w", e.ID, err)
	}
	return nil
}
