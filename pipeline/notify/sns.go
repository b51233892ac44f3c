package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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

var _ IDPublisher = (*SNSPublisher)(nil)

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

// Publish sends n as its Wire says: per-protocol messages (MessageStructure "json") when n has a
// short line or JSON, the ASCII subject, the attributes. A FIFO topic (".fifo") gets the dataset
// as message group and a deduplication id derived from n.ID, so SNS itself drops a redelivery
// within its window.
func (p *SNSPublisher) Publish(ctx context.Context, n Notification) error {
	_, err := p.PublishID(ctx, n)
	return err
}

// PublishID is Publish returning SNS's MessageId.
func (p *SNSPublisher) PublishID(ctx context.Context, n Notification) (string, error) {
	w, err := n.Wire()
	if err != nil {
		return "", err
	}
	topic := p.TopicFor(n.Dataset)
	if topic == "" {
		return "", fmt.Errorf("notify: no sns topic for dataset %q", n.Dataset)
	}
	in := &sns.PublishInput{
		TopicArn:          aws.String(topic),
		Subject:           aws.String(w.Subject),
		Message:           aws.String(w.Message),
		MessageAttributes: messageAttributes(w.Attributes),
	}
	if w.Structure != "" {
		in.MessageStructure = aws.String(w.Structure)
	}
	if strings.HasSuffix(topic, ".fifo") {
		in.MessageGroupId = aws.String(n.Dataset)
		id := n.ID
		if id == "" {
			id = n.Subject + "\n" + w.Message
		}
		sum := sha256.Sum256([]byte(id))
		in.MessageDeduplicationId = aws.String(hex.EncodeToString(sum[:]))
	}
	out, err := p.api.Publish(ctx, in)
	if err != nil {
		return "", fmt.Errorf("notify: sns publish %s to %s: %w", n.ID, topic, err)
	}
	return aws.ToString(out.MessageId), nil
}

// messageAttributes turns the wire's attributes into SNS String attributes.
func messageAttributes(attrs map[string]string) map[string]snstypes.MessageAttributeValue {
	out := make(map[string]snstypes.MessageAttributeValue, len(attrs))
	for _, k := range sortedKeys(attrs) {
		out[k] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(attrs[k])}
	}
	return out
}
