// Package redrive sends dead-lettered events back for delivery: the embedded default's
// dead-letter folder (data/events/dead-letter/<rule>/, through the bus's inbox, whether or not
// `ferry serve` is running) and, on AWS, the SQS dead-letter queues of the deployment's rules and
// Lambdas (read, put back on the bus with PutEvents, deleted only once PutEvents accepted them).
//
// Redriving is safe to repeat and safe to overlap with normal delivery: the handlers' ledger
// makes an event that was in fact handled before, or is redriven twice, do nothing the second
// time. So redrive sends first and forgets afterwards (a file or message is removed only after
// its event was accepted), never the reverse: a crash in between costs a duplicate, never an event.
//
// `ferry redrive` is its command-line face; the package has no gateway imports, so an operations
// Lambda could run the same code.
package redrive

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ferrygw/ferry/pipeline/event"
)

// Item is one dead-lettered event.
type Item struct {
	From      string          // where it lies: "dead-letter/<rule>" or the queue's URL
	Ref       string          // the file, or the SQS message id
	Event     json.RawMessage // the original EventBridge event
	LastError string          // why it was dead-lettered, when the record says

	receipt string // SQS receipt handle
}

// Describe says what the event is about in one line: id, source, detail-type and, for S3 and
// pipeline events, the object or the files.
func (it Item) Describe() string {
	env, err := event.DecodeEnvelope(it.Event)
	if err != nil {
		return "(not an event: " + err.Error() + ")"
	}
	what := ""
	switch env.Source {
	case event.SourceS3, event.SourceRedrive:
		if e, err := event.DecodeS3(it.Event); err == nil {
			what = "s3://" + e.Detail.Bucket.Name + "/" + e.Detail.Object.Key
		}
	case event.SourcePipeline:
		if e, err := event.DecodeFile(it.Event); err == nil {
			var keys []string
			for _, f := range e.Detail.Files {
				keys = append(keys, f.Key)
			}
			what = e.Detail.Dataset + ": " + strings.Join(keys, ", ")
		}
	}
	s := fmt.Sprintf("%s %s %q", env.ID, env.Source, env.DetailType)
	if what != "" {
		s += " " + what
	}
	return s
}

// Result is what became of one item.
type Result struct {
	Item
	Redriven bool  // sent back (false in a dry run)
	Err      error // why it was not
}

// lambdaDestination is the record a Lambda async on-failure destination writes: the original
// event is its requestPayload.
type lambdaDestination struct {
	Version        string `json:"version"`
	RequestContext *struct {
		FunctionArn string `json:"functionArn"`
		Condition   string `json:"condition"`
	} `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponsePayload *struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	} `json:"responsePayload"`
}

// unwrap returns the EventBridge event a dead-letter message holds: the body itself (an
// EventBridge rule's DLQ, a Lambda function's DLQ), or the requestPayload of a Lambda on-failure
// destination record, with the error that record states.
func unwrap(body []byte) (json.RawMessage, string, error) {
	var d lambdaDestination
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, "", fmt.Errorf("not JSON: %w", err)
	}
	if d.RequestContext != nil && len(d.RequestPayload) > 0 {
		why := d.RequestContext.Condition
		if r := d.ResponsePayload; r != nil && r.ErrorMessage != "" {
			why = strings.TrimSpace(why + ": " + r.ErrorType + ": " + r.ErrorMessage)
		}
		if _, err := event.DecodeEnvelope(d.RequestPayload); err != nil {
			return nil, why, fmt.Errorf("lambda destination record: requestPayload: %w", err)
		}
		return d.RequestPayload, why, nil
	}
	if _, err := event.DecodeEnvelope(body); err != nil {
		return nil, "", err
	}
	return json.RawMessage(body), "", nil
}
