package redrive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/ferrygw/ferry/pipeline/event"
)

// SQSAPI is the SQS calls redrive makes; *sqs.Client satisfies it.
type SQSAPI interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

// EventsAPI is the EventBridge call redrive makes; *eventbridge.Client satisfies it.
type EventsAPI interface {
	PutEvents(ctx context.Context, in *awseventbridge.PutEventsInput, optFns ...func(*awseventbridge.Options)) (*awseventbridge.PutEventsOutput, error)
}

var (
	_ SQSAPI    = (*sqs.Client)(nil)
	_ EventsAPI = (*awseventbridge.Client)(nil)
)

// Queues redrives the deployment's SQS dead-letter queues: the DLQs of its EventBridge rules
// (whose messages are the events themselves) and its Lambdas' on-failure destinations (whose
// records wrap the event as requestPayload).
type Queues struct {
	SQS    SQSAPI
	Events EventsAPI
	Bus    string   // event bus name or ARN; "" = default
	Queues []string // queue URLs, or names (resolved with GetQueueUrl)
	// Max bounds the messages taken from each queue in one run (0: 10,000), so a queue that
	// keeps filling cannot keep redrive running.
	Max int
	// Hold is how long a received message stays hidden from others while it is sent back
	// (SQS visibility timeout, seconds; 0: 120). A message whose event was not accepted
	// reappears in the queue after it, for the next run.
	Hold int32
}

// Redrive sends every message of every queue back onto the bus, deleting each only after
// PutEvents accepted its entry; a message that does not hold an event is left in its queue and
// reported. With dryRun it lists the messages and leaves them all visible again. report is
// called for each message. It returns how many were (in a dry run: would be) redriven.
func (q Queues) Redrive(ctx context.Context, dryRun bool, report func(Result)) (int, error) {
	total := 0
	var errs []error
	for _, name := range q.Queues {
		url, err := q.queueURL(ctx, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n, err := q.drain(ctx, url, dryRun, report)
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("queue %s: %w", url, err))
		}
	}
	return total, errors.Join(errs...)
}

func (q Queues) queueURL(ctx context.Context, name string) (string, error) {
	if strings.HasPrefix(name, "https://") || strings.HasPrefix(name, "http://") {
		return name, nil
	}
	out, err := q.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// drain receives from one queue until it is empty (as far as long polling sees) or Max.
func (q Queues) drain(ctx context.Context, url string, dryRun bool, report func(Result)) (int, error) {
	maxMsgs, hold := q.Max, q.Hold
	if maxMsgs <= 0 {
		maxMsgs = 10000
	}
	if hold <= 0 {
		hold = 120
	}
	seen, redriven := 0, 0
	var listed []sqstypes.ChangeMessageVisibilityBatchRequestEntry
	defer func() {
		// A dry run hid what it read for Hold seconds: show it again at once.
		for i := 0; i < len(listed); i += 10 {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_, _ = q.SQS.ChangeMessageVisibilityBatch(cctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(url), Entries: listed[i:min(i+10, len(listed))]})
			cancel()
		}
	}()
	for seen < maxMsgs {
		out, err := q.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: int32(min(10, maxMsgs-seen)),
			WaitTimeSeconds: 1, VisibilityTimeout: hold, MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			return redriven, fmt.Errorf("receive: %w", err)
		}
		if len(out.Messages) == 0 {
			return redriven, nil
		}
		seen += len(out.Messages)
		var items []Item
		for _, m := range out.Messages {
			it := Item{From: url, Ref: aws.ToString(m.MessageId), receipt: aws.ToString(m.ReceiptHandle)}
			ev, why, err := unwrap([]byte(aws.ToString(m.Body)))
			it.Event, it.LastError = ev, why
			if it.LastError == "" {
				it.LastError = attr(m.MessageAttributes, "ERROR_MESSAGE", "ErrorMessage")
			}
			if dryRun {
				listed = append(listed, sqstypes.ChangeMessageVisibilityBatchRequestEntry{
					Id: aws.String(fmt.Sprint(len(listed))), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
			}
			if err != nil {
				report(Result{Item: it, Err: fmt.Errorf("message %s does not hold an event; left in the queue: %w", it.Ref, err)})
				continue
			}
			if dryRun {
				redriven++
				report(Result{Item: it})
				continue
			}
			items = append(items, it)
		}
		if len(items) > 0 {
			n, err := q.send(ctx, url, items, report)
			redriven += n
			if err != nil {
				return redriven, err
			}
		}
	}
	return redriven, nil
}

// send puts items' events on the bus in one PutEvents call and deletes the messages of the
// accepted entries.
func (q Queues) send(ctx context.Context, url string, items []Item, report func(Result)) (int, error) {
	in := &awseventbridge.PutEventsInput{}
	for _, it := range items {
		in.Entries = append(in.Entries, q.entry(it.Event))
	}
	out, err := q.Events.PutEvents(ctx, in)
	if err != nil {
		for _, it := range items {
			report(Result{Item: it, Err: fmt.Errorf("put events: %w; left in the queue", err)})
		}
		return 0, fmt.Errorf("put events: %w", err)
	}
	var del []sqstypes.DeleteMessageBatchRequestEntry
	accepted := map[string]Item{}
	for i, it := range items {
		if i >= len(out.Entries) || out.Entries[i].ErrorCode != nil {
			why := "no result"
			if i < len(out.Entries) {
				why = aws.ToString(out.Entries[i].ErrorCode) + ": " + aws.ToString(out.Entries[i].ErrorMessage)
			}
			report(Result{Item: it, Err: fmt.Errorf("not accepted by the bus (%s); left in the queue", why)})
			continue
		}
		id := fmt.Sprint(i)
		accepted[id] = it
		del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(id), ReceiptHandle: aws.String(it.receipt)})
	}
	if len(del) == 0 {
		return 0, nil
	}
	dout, err := q.SQS.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: del})
	if err != nil {
		// Sent but not deleted: they come back after Hold and a later run sends them again,
		// which the ledger absorbs.
		for _, it := range accepted {
			report(Result{Item: it, Redriven: true, Err: fmt.Errorf("sent, but not deleted from the queue: %w", err)})
		}
		return len(accepted), nil
	}
	for _, f := range dout.Failed {
		id := aws.ToString(f.Id)
		report(Result{Item: accepted[id], Redriven: true, Err: fmt.Errorf("sent, but not deleted from the queue: %s", aws.ToString(f.Message))})
		delete(accepted, id)
	}
	for i := range items {
		if it, ok := accepted[fmt.Sprint(i)]; ok {
			report(Result{Item: it, Redriven: true})
		}
	}
	return len(del), nil
}

// entry is the PutEvents entry that puts ev back: its source, detail-type, detail, resources
// and time. EventBridge refuses sources starting with "aws." from PutEvents, so S3's events go
// back as event.SourceRedrive, which the transform rule also matches.
func (q Queues) entry(ev []byte) ebtypes.PutEventsRequestEntry {
	env, _ := event.DecodeEnvelope(ev) // unwrap checked it
	src := env.Source
	if strings.HasPrefix(src, "aws.") {
		src = event.SourceRedrive
	}
	e := ebtypes.PutEventsRequestEntry{
		Source: aws.String(src), DetailType: aws.String(env.DetailType),
		Detail: aws.String(string(bytes.TrimSpace(env.Detail))), Resources: env.Resources,
	}
	if !env.Time.IsZero() {
		e.Time = aws.Time(env.Time)
	}
	if q.Bus != "" {
		e.EventBusName = aws.String(q.Bus)
	}
	return e
}

func attr(attrs map[string]sqstypes.MessageAttributeValue, names ...string) string {
	for _, n := range names {
		if v, ok := attrs[n]; ok && v.StringValue != nil {
			return *v.StringValue
		}
	}
	return ""
}
