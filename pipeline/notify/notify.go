// Package notify tells end users that their data arrived (or why it did not). Handlers build a
// Notification and hand it to a Publisher: SNS on AWS, the local sink in the embedded default.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Notification is one message to an audience, in the forms its subscribers take: a readable
// text (e-mail), optionally a short line (SMS) and the full JSON (HTTPS, SQS, Lambda subscribers,
// who parse rather than read). Attributes become SNS message attributes, so subscribers filter
// with SNS filter policies (e.g. {"dataset": ["sales"]}). Wire says what SNS is sent.
type Notification struct {
	// ID is stable for one fact (e.g. derived from the input object), so a redelivered event
	// can be recognised downstream.
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Dataset string    `json:"dataset"`
	// Subject is the e-mail subject as written (UTF-8); the wire form is ASCII (see Wire).
	Subject string `json:"subject"`
	// Message is the readable text: the e-mail body.
	Message string `json:"message"`
	// SMS is a short line for SMS subscribers; empty: they get the default.
	SMS string `json:"sms,omitempty"`
	// JSON is the whole notice for machine subscribers; when set it is the default message.
	JSON       json.RawMessage   `json:"json,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// TransferIDs are the gateway transfers of the files the notice is about, for logs; they
	// are in the texts and the JSON too. Never an SNS attribute: subscribers filter on
	// attributes, and an id per file is nothing to filter on.
	TransferIDs []string `json:"transfer_ids,omitempty"`
}

// Publisher delivers notifications. An error means "not delivered, try again".
type Publisher interface {
	Publish(ctx context.Context, n Notification) error
}

// IDPublisher is a Publisher that also says which message id the delivery got (SNS's
// MessageId, or the local sink's own), which the pipeline records so `ferry trace` can name
// the message a reader received.
type IDPublisher interface {
	Publisher
	PublishID(ctx context.Context, n Notification) (messageID string, err error)
}

// PublishID publishes n through p and returns the message id when p reports one.
func PublishID(ctx context.Context, p Publisher, n Notification) (string, error) {
	if ip, ok := p.(IDPublisher); ok {
		return ip.PublishID(ctx, n)
	}
	return "", p.Publish(ctx, n)
}

// Validate reports what a publisher would refuse.
func (n Notification) Validate() error {
	var errs []error
	if n.Dataset == "" {
		errs = append(errs, errors.New("notification: dataset is required"))
	}
	if n.Subject == "" {
		errs = append(errs, errors.New("notification: subject is required"))
	}
	if len(n.Subject) > MaxSubject {
		errs = append(errs, fmt.Errorf("notification: subject longer than %d bytes", MaxSubject))
	}
	if n.JSON != nil && !json.Valid(n.JSON) {
		errs = append(errs, errors.New("notification: json is not valid JSON"))
	}
	return errors.Join(errs...)
}

// MaxSubject is the longest subject, in bytes: SNS wants subjects "less than 100 characters".
const MaxSubject = 99

// TruncateSubject cuts s to MaxSubject bytes, on a rune boundary, ending in "..." when cut.
func TruncateSubject(s string) string {
	if len(s) <= MaxSubject {
		return s
	}
	cut := MaxSubject - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
