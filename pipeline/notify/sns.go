package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
)

// SNSAPI is the one SDK call the SNS publisher makes; *sns.Client satisfies it.
type SNSAPI interface {
	Publish(ctx context.Context, in *sns.PublishInput, optFns ...func(*sns.Options)) (*sns.PublishOutput, error)
}

var _ SNSAPI = (*sns.Client)(nil)

// SNSPublisher publishes notifications to SNS topics. The topic is chosen by dataset (Topics),
// else DefaultTopic. Every notification carries the message attribute "dataset" plus its
// Attributes (as String attributes), so subscribers filter with SNS filter policies.
type SNSPublisher struct {
	api          SNSAPI
	defaultTopic string
	topics       map[string]string
}

var _ Publisher = (*SNSPublisher)(nil)

// NewSNSPublisher returns a publisher; topics maps dataset -> topic ARN and may be nil.
func NewSNSPublisher(api SNSAPI, defaultTopic string, topics map[string]string) (*SNSPublisher, error) {
	if api == nil {
		return nil, fmt.Errorf("notify: sns publisher needs a client")
	}
	if defaultTopic == "" && len(topics) == 0 {
		return nil, fmt.Errorf("notify: sns publisher needs a default topic or per-dataset topics")
	}
	t := make(map[string]string, len(topics))
	for k, v := range topics {
		t[k] = v
	}
	return &SNSPublisher{api: api, defaultTopic: defaultTopic, topics: t}, nil
}

// TopicFor returns the topic ARN notifications of dataset go to.
func (p *SNSPublisher) TopicFor(dataset string) string {
	if t, ok := p.topics[dataset]; ok && t != "" {
		return t
	}
	return p.defaultTopic
}

// Publish sends n. A FIFO topic (".fifo") gets the dataset as message group and a
// deduplication id derived from n.ID, so SNS itself drops a redelivery within its window.
func (p *SNSPublisher) Publish(ctx context.Context, n Notification) error {
	if err := n.Validate(); err != nil {
		return err
	}
	topic := p.TopicFor(n.Dataset)
	if topic == "" {
		return fmt.Errorf("notify: no sns topic for dataset %q", n.Dataset)
	}
	in := &sns.PublishInput{
		TopicArn:          aws.String(topic),
		Subject:           aws.String(snsSubject(n.Subject)),
		Message:           aws.String(n.Message),
		MessageAttributes: messageAttributes(n),
	}
	if strings.HasSuffix(topic, ".fifo") {
		in.MessageGroupId = aws.String(n.Dataset)
		id := n.ID
		if id == "" {
			id = n.Subject + "\n" + n.Message
		}
		sum := sha256.Sum256([]byte(id))
		in.MessageDeduplicationId = aws.String(hex.EncodeToString(sum[:]))
	}
	if _, err := p.api.Publish(ctx, in); err != nil {
		return fmt.Errorf("notify: sns publish %s to %s: %w", n.ID, topic, err)
	}
	return nil
}

// messageAttributes turns n's dataset and attributes into SNS String attributes. SNS refuses
// empty values, so those are left out.
func messageAttributes(n Notification) map[string]snstypes.MessageAttributeValue {
	attrs := map[string]snstypes.MessageAttributeValue{}
	keys := make([]string, 0, len(n.Attributes))
	for k := range n.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := n.Attributes[k]; v != "" && k != "" {
			attrs[k] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
		}
	}
	attrs["dataset"] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(n.Dataset)}
	return attrs
}

// snsSubject makes a subject SNS accepts: printable ASCII only (SNS refuses other characters
// in subjects, while the message itself is UTF-8), so "état.csv" becomes "?tat.csv"; control
// characters become spaces; it must start with a letter, digit or punctuation.
func snsSubject(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			b = append(b, ' ')
		case r > 0x7f:
			b = append(b, '?')
		default:
			b = append(b, byte(r))
		}
	}
	out := strings.TrimSpace(string(b))
	if out == "" {
		return "Notification"
	}
	return out
}
