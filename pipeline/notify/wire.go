package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Wire is exactly what an SNS Publish of a Notification carries: the SNS publisher sends it and
// the local outbox records it, so what `make run` shows is what subscribers on AWS receive.
type Wire struct {
	// Subject is the ASCII subject SNS accepts (see WireSubject).
	Subject string `json:"subject"`
	// Structure is "json" when Message holds one message per protocol, else "".
	Structure string `json:"message_structure,omitempty"`
	// Message is the Publish Message parameter.
	Message string `json:"message"`
	// Attributes are the String message attributes, dataset included.
	Attributes map[string]string `json:"attributes"`
}

// Protocols a per-protocol message names. The readable text goes to "email", the short line to
// "sms", and "default" — what every other protocol gets: https, http, sqs, lambda, firehose,
// email-json, application — is the JSON, written once (SNS counts every key against its size
// limit, so the JSON is not repeated per protocol).
const (
	ProtocolDefault = "default"
	ProtocolEmail   = "email"
	ProtocolSMS     = "sms"
)

// MaxMessageBytes is SNS's default limit on a published message, Message and attributes
// together (a topic's MaximumMessageSize can raise it; Ferry keeps to the default).
const MaxMessageBytes = 256 << 10

// ErrTooLarge is a notification SNS would refuse for its size.
var ErrTooLarge = errors.New("message too large")

// MaxSMS is the longest SMS line, in characters: one SMS segment of Latin text, so a notice is
// not split (and billed) in several.
const MaxSMS = 140

// Wire returns what SNS is sent for n: a plain message when n has only a text, else
// MessageStructure "json" with "default" (the JSON, or the text when n has no JSON), "email" (the
// text) and "sms" (the short line, when set).
func (n Notification) Wire() (Wire, error) {
	if err := n.Validate(); err != nil {
		return Wire{}, err
	}
	w := Wire{Subject: WireSubject(n.Subject), Attributes: map[string]string{}}
	for k, v := range n.Attributes {
		if k != "" && v != "" { // SNS refuses empty values
			w.Attributes[k] = v
		}
	}
	w.Attributes["dataset"] = n.Dataset
	if n.SMS == "" && n.JSON == nil {
		w.Message = n.Message
	} else {
		msgs := map[string]string{ProtocolDefault: n.Message, ProtocolEmail: n.Message}
		if n.JSON != nil {
			msgs[ProtocolDefault] = string(n.JSON)
		}
		if n.SMS != "" {
			msgs[ProtocolSMS] = n.SMS
		}
		b, err := json.Marshal(msgs)
		if err != nil {
			return Wire{}, fmt.Errorf("notify: encode per-protocol message: %w", err)
		}
		w.Structure, w.Message = "json", string(b)
	}
	if w.Message == "" {
		return Wire{}, fmt.Errorf("notification: empty message")
	}
	if size := w.Size(); size > MaxMessageBytes {
		return Wire{}, fmt.Errorf("notification %s: %w: %d bytes, SNS takes at most %d", n.ID, ErrTooLarge, size, MaxMessageBytes)
	}
	return w, nil
}

// Size is what SNS counts against MaxMessageBytes: the message and every attribute's name, type
// and value.
func (w Wire) Size() int {
	n := len(w.Message)
	for k, v := range w.Attributes {
		n += len(k) + len("String") + len(v)
	}
	return n
}

// Deliveries returns what a subscriber of each listed protocol receives as its message (SNS
// wraps it in its own envelope for https, sqs and lambda unless raw delivery is on), resolved as
// SNS resolves MessageStructure "json": the protocol's key, else "default".
func (w Wire) Deliveries() map[string]string {
	out := map[string]string{}
	var msgs map[string]string
	if w.Structure == "json" {
		_ = json.Unmarshal([]byte(w.Message), &msgs) // Wire built it
	}
	for _, p := range DeliveryProtocols {
		if m, ok := msgs[p]; ok {
			out[p] = m
		} else if d, ok := msgs[ProtocolDefault]; ok {
			out[p] = d
		} else {
			out[p] = w.Message
		}
	}
	return out
}

// DeliveryProtocols are the protocols the outbox shows deliveries for.
var DeliveryProtocols = []string{"email", "sms", "https", "sqs", "lambda"}

// sortedKeys is for stable output.
func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
