package event

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Reasons S3 gives in detail.reason.
const (
	ReasonPutObject               = "PutObject"
	ReasonPostObject              = "POST Object"
	ReasonCopyObject              = "CopyObject"
	ReasonCompleteMultipartUpload = "CompleteMultipartUpload"
	ReasonDeleteObject            = "DeleteObject"
	ReasonLifecycleExpiration     = "Lifecycle Expiration"
)

// Deletion types S3 gives in detail.deletion-type of Object Deleted events.
const (
	DeletionTypePermanentlyDeleted  = "Permanently Deleted"   // unversioned, or a version removed
	DeletionTypeDeleteMarkerCreated = "Delete Marker Created" // versioned bucket, plain DELETE
)

// EmptyETag is the etag S3 puts in every Object Deleted event: the MD5 of no bytes.
const EmptyETag = "d41d8cd98f00b204e9800998ecf8427e"

// RequesterS3 is the requester of events S3 causes itself (lifecycle expiration).
const RequesterS3 = "s3.amazonaws.com"

// S3Event is an S3 "Object Created" or "Object Deleted" event as EventBridge delivers it.
type S3Event = Event[S3ObjectDetail]

// S3ObjectDetail is the detail of S3's Object Created / Object Deleted events on EventBridge
// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html).
type S3ObjectDetail struct {
	Version         string   `json:"version"`
	Bucket          S3Bucket `json:"bucket"`
	Object          S3Object `json:"object"`
	RequestID       string   `json:"request-id"`
	Requester       string   `json:"requester"`                   // account id or service principal
	SourceIPAddress string   `json:"source-ip-address,omitempty"` // only for events caused by a request
	Reason          string   `json:"reason"`                      // Reason* constants
	DeletionType    string   `json:"deletion-type,omitempty"`     // Object Deleted only
}

// S3Bucket names the bucket of an S3 event.
type S3Bucket struct {
	Name string `json:"name"`
}

// S3Object describes the object of an S3 event. Key is the raw object key, exactly as stored:
// EventBridge does not form-encode it, so never unescape it.
type S3Object struct {
	Key       string `json:"key"`
	Size      *int64 `json:"size,omitempty"` // absent on Object Deleted
	ETag      string `json:"etag"`           // unquoted; "-N" suffix for multipart uploads
	VersionID string `json:"version-id,omitempty"`
	Sequencer string `json:"sequencer"` // orders events for the same key; see CompareSequencers
}

// IsDirectoryMarker reports whether the object is a folder placeholder: a key ending in "/" with
// no content. Object Deleted events carry no size, so there a trailing "/" is enough.
func (o S3Object) IsDirectoryMarker() bool {
	return strings.HasSuffix(o.Key, "/") && (o.Size == nil || *o.Size == 0)
}

// IsMultipart reports whether the etag has the "-N" suffix of an object assembled by
// CompleteMultipartUpload (its etag is then not the MD5 of the content).
func (o S3Object) IsMultipart() bool {
	i := strings.LastIndexByte(o.ETag, '-')
	return i > 0 && i < len(o.ETag)-1 && strings.Trim(o.ETag[i+1:], "0123456789") == ""
}

// BucketARN is the resource S3 lists in its events for bucket.
func BucketARN(bucket string) string { return "arn:aws:s3:::" + bucket }

// IsCreatedReason reports whether r is a reason S3 gives for Object Created.
func IsCreatedReason(r string) bool {
	switch r {
	case ReasonPutObject, ReasonPostObject, ReasonCopyObject, ReasonCompleteMultipartUpload:
		return true
	}
	return false
}

// IsDeletedReason reports whether r is a reason S3 gives for Object Deleted.
func IsDeletedReason(r string) bool {
	return r == ReasonDeleteObject || r == ReasonLifecycleExpiration
}

// S3Change describes one object change, for an emulator building the event S3 would send.
type S3Change struct {
	Account string    // 12-digit account id of the bucket owner
	Region  string    // region of the bucket
	Time    time.Time // when it happened; zero means now
	Bucket  string
	Key     string // raw key
	Size    int64  // Object Created only
	ETag    string // Object Created only; surrounding quotes (as S3 APIs return them) are removed
	// VersionID is set on versioned buckets only.
	VersionID string
	// Sequencer orders changes of one key; take it from a Sequencer. Required.
	Sequencer string
	// RequestID is the S3 request's id; empty means a new random one.
	RequestID string
	Requester string // account id or principal of the caller
	// SourceIPAddress is the client's IP; "ip:port" is accepted and the port dropped. Leave
	// empty for changes S3 makes itself (lifecycle).
	SourceIPAddress string
	Reason          string // Reason* constant matching the event type
	DeletionType    string // Object Deleted only; empty means Permanently Deleted
}

// NewObjectCreated builds the Object Created event S3 sends for c.
func NewObjectCreated(c S3Change) (S3Event, error) {
	if !IsCreatedReason(c.Reason) {
		return S3Event{}, fmt.Errorf("object created event: reason %q is not a create reason", c.Reason)
	}
	if c.Size < 0 {
		return S3Event{}, fmt.Errorf("object created event: negative size %d", c.Size)
	}
	size := c.Size
	e := newS3Event(DetailTypeObjectCreated, c)
	e.Detail.Object.Size = &size
	e.Detail.Object.ETag = strings.Trim(c.ETag, `"`)
	return e, ValidateS3(e)
}

// NewObjectDeleted builds the Object Deleted event S3 sends for c: no size, the empty-MD5
// etag, and a deletion type.
func NewObjectDeleted(c S3Change) (S3Event, error) {
	if !IsDeletedReason(c.Reason) {
		return S3Event{}, fmt.Errorf("object deleted event: reason %q is not a delete reason", c.Reason)
	}
	e := newS3Event(DetailTypeObjectDeleted, c)
	e.Detail.Object.ETag = EmptyETag
	e.Detail.DeletionType = c.DeletionType
	if e.Detail.DeletionType == "" {
		e.Detail.DeletionType = DeletionTypePermanentlyDeleted
	}
	return e, ValidateS3(e)
}

func newS3Event(detailType string, c S3Change) S3Event {
	ip := c.SourceIPAddress
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	reqID := c.RequestID
	if reqID == "" {
		reqID = newRequestID()
	}
	return S3Event{
		Version: EnvelopeVersion, ID: NewID(), DetailType: detailType, Source: SourceS3,
		Account: c.Account, Time: eventTime(c.Time), Region: c.Region,
		Resources: resources(BucketARN(c.Bucket)),
		Detail: S3ObjectDetail{
			Version:   EnvelopeVersion,
			Bucket:    S3Bucket{Name: c.Bucket},
			Object:    S3Object{Key: c.Key, VersionID: c.VersionID, Sequencer: c.Sequencer},
			RequestID: reqID, Requester: c.Requester, SourceIPAddress: ip, Reason: c.Reason,
		},
	}
}

// newRequestID returns 16 upper-case hex digits, the shape of S3 request ids.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// DecodeS3 parses an S3 Object Created / Object Deleted event. It rejects other sources and
// detail types, and events whose detail is not an object, but is otherwise lenient (fields S3
// may add later are ignored); use ValidateS3 for the full check.
// An event redriven under SourceRedrive decodes as S3's own (its Source reads "aws.s3").
func DecodeS3(data []byte) (S3Event, error) {
	env, err := DecodeEnvelope(data)
	if err != nil {
		return S3Event{}, err
	}
	if env.Source != SourceS3 && env.Source != SourceRedrive {
		return S3Event{}, fmt.Errorf("decode s3 event: source %q, want %q", env.Source, SourceS3)
	}
	if env.DetailType != DetailTypeObjectCreated && env.DetailType != DetailTypeObjectDeleted {
		return S3Event{}, fmt.Errorf("decode s3 event: unsupported detail-type %q", env.DetailType)
	}
	env.Source = SourceS3 // a redriven S3 event is S3's event
	return As[S3ObjectDetail](env)
}

// ValidateS3 checks that e is a complete S3 object event as AWS documents it and returns every
// problem found.
func ValidateS3(e S3Event) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	d := e.Detail
	if e.Source != SourceS3 {
		bad("source %q, want %q", e.Source, SourceS3)
	}
	if e.ID == "" {
		bad("missing id")
	}
	if e.Time.IsZero() {
		bad("missing time")
	}
	if d.Bucket.Name == "" {
		bad("missing detail.bucket.name")
	} else if !slices.Contains(e.Resources, BucketARN(d.Bucket.Name)) {
		bad("resources %q lack the bucket ARN %q", e.Resources, BucketARN(d.Bucket.Name))
	}
	if d.Object.Key == "" {
		bad("missing detail.object.key")
	}
	if d.Object.ETag == "" {
		bad("missing detail.object.etag")
	}
	if !isHex(d.Object.Sequencer) {
		bad("detail.object.sequencer %q is not hexadecimal", d.Object.Sequencer)
	}
	if d.RequestID == "" {
		bad("missing detail.request-id")
	}
	if d.Requester == "" {
		bad("missing detail.requester")
	}
	switch e.DetailType {
	case DetailTypeObjectCreated:
		if !IsCreatedReason(d.Reason) {
			bad("reason %q is not a create reason", d.Reason)
		}
		if d.Object.Size == nil {
			bad("missing detail.object.size")
		} else if *d.Object.Size < 0 {
			bad("negative detail.object.size %d", *d.Object.Size)
		}
		if d.DeletionType != "" {
			bad("deletion-type %q on an Object Created event", d.DeletionType)
		}
	case DetailTypeObjectDeleted:
		if !IsDeletedReason(d.Reason) {
			bad("reason %q is not a delete reason", d.Reason)
		}
		if d.Object.Size != nil {
			bad("detail.object.size present on an Object Deleted event")
		}
		if d.DeletionType != DeletionTypePermanentlyDeleted && d.DeletionType != DeletionTypeDeleteMarkerCreated {
			bad("deletion-type %q", d.DeletionType)
		}
	default:
		bad("detail-type %q is not an S3 object event", e.DetailType)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid s3 event %s: %w", e.ID, err)
	}
	return nil
}
