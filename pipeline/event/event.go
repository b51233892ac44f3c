// Package event is Ferry's event contract: the EventBridge envelope, the detail S3 sends for
// "Object Created" and "Object Deleted" (aws-lambda-go has no type for it), and the detail of
// Ferry's own gateway events (source "ferry.gateway"), which say who uploaded what over which
// protocol — something S3's event cannot know.
//
// The same JSON travels on AWS (S3 -> EventBridge -> Lambda, gateway -> PutEvents) and through
// the embedded default's in-process bus, so this package has no AWS SDK imports. Golden files in
// testdata/ are AWS's documented examples; tests round-trip them byte-for-byte in meaning.
//
// Object keys in S3 EventBridge events are raw: never form-decode them (the classic S3
// notification format URL-encodes keys; the EventBridge format does not).
package event

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"
)

// Sources.
const (
	SourceS3      = "aws.s3"        // S3's own events
	SourceGateway = "ferry.gateway" // Ferry's gateway events
	// SourceRedrive carries an S3 event sent back for delivery by `ferry redrive`: EventBridge
	// refuses PutEvents entries whose source starts with "aws.", so the event goes back under
	// this source with its detail-type and detail unchanged, and DecodeS3 reads it as S3's.
	SourceRedrive = "ferry.redrive"
)

// Detail types.
const (
	DetailTypeObjectCreated     = "Object Created"
	DetailTypeObjectDeleted     = "Object Deleted"
	DetailTypeTransferCompleted = "Transfer Completed"
	DetailTypeTransferFailed    = "Transfer Failed"
	DetailTypeLoginFailed       = "Login Failed"
	DetailTypeClientBanned      = "Client Banned"
)

// EnvelopeVersion is the envelope's and S3 detail's "version": "0" for all events today.
const EnvelopeVersion = "0"

// Event is an EventBridge event as delivered to targets, with a typed detail. Its JSON matches
// aws-lambda-go's events.EventBridgeEvent field for field (a test checks this), so a Lambda can
// take Event[S3ObjectDetail] directly as its input type.
type Event[D any] struct {
	Version    string    `json:"version"`
	ID         string    `json:"id"`
	DetailType string    `json:"detail-type"`
	Source     string    `json:"source"`
	Account    string    `json:"account"`
	Time       time.Time `json:"time"`
	Region     string    `json:"region"`
	Resources  []string  `json:"resources"`
	Detail     D         `json:"detail"`
}

// Envelope is an event whose detail is not decoded yet: what a bus or router handles before it
// knows the source and detail type.
type Envelope = Event[json.RawMessage]

// DecodeEnvelope parses an event without interpreting its detail.
func DecodeEnvelope(data []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return Envelope{}, fmt.Errorf("decode event: %w", err)
	}
	if e.Source == "" || e.DetailType == "" {
		return Envelope{}, fmt.Errorf("decode event: missing source or detail-type")
	}
	return e, nil
}

// Raw returns e with its detail encoded as JSON, the form a bus stores and matches.
func Raw[D any](e Event[D]) (Envelope, error) {
	d, err := json.Marshal(e.Detail)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s detail: %w", e.DetailType, err)
	}
	return Envelope{
		Version: e.Version, ID: e.ID, DetailType: e.DetailType, Source: e.Source,
		Account: e.Account, Time: e.Time, Region: e.Region, Resources: e.Resources, Detail: d,
	}, nil
}

// As decodes e's detail into D. It does not check source or detail type; the typed decoders
// (DecodeS3, DecodeGateway) do.
func As[D any](e Envelope) (Event[D], error) {
	var d D
	if len(bytes.TrimSpace(e.Detail)) == 0 {
		return Event[D]{}, fmt.Errorf("decode %s detail: empty", e.DetailType)
	}
	if err := json.Unmarshal(e.Detail, &d); err != nil {
		return Event[D]{}, fmt.Errorf("decode %s detail: %w", e.DetailType, err)
	}
	return Event[D]{
		Version: e.Version, ID: e.ID, DetailType: e.DetailType, Source: e.Source,
		Account: e.Account, Time: e.Time, Region: e.Region, Resources: e.Resources, Detail: d,
	}, nil
}

// NewID returns a random (version 4) UUID, the form EventBridge uses for event ids.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics instead, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// eventTime is the envelope time for an event happening at t: UTC, whole seconds, as
// EventBridge writes it ("2021-11-12T00:00:00Z"). A zero t means now.
func eventTime(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UTC().Truncate(time.Second)
}

// resources returns a non-nil list, because EventBridge always writes "resources": [...].
func resources(arns ...string) []string {
	out := make([]string, 0, len(arns))
	return append(out, arns...)
}
