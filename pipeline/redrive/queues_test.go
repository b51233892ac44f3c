package redrive_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/internal/fakeaws"
	"github.com/ferrygw/ferry/pipeline/redrive"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

func awsClients(url string) (*sqs.Client, *awseventbridge.Client) {
	creds := credentials.NewStaticCredentialsProvider("testing", "testing", "")
	return sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), Credentials: creds}),
		awseventbridge.New(awseventbridge.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), Credentials: creds})
}

func queue(t *testing.T, c *sqs.Client, name string) (url, arn string) {
	t.Helper()
	out, err := c.CreateQueue(testCtx(t), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := c.GetQueueAttributes(testCtx(t), &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.QueueUrl), attrs.Attributes["QueueArn"]
}

func depth(t *testing.T, c *sqs.Client, url string) int {
	t.Helper()
	attrs, err := c.GetQueueAttributes(testCtx(t), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(attrs.Attributes["ApproximateNumberOfMessages"], &n)
	return n
}

// lambdaRecord is what a Lambda async on-failure destination writes to SQS for ev.
func lambdaRecord(ev []byte) string {
	b, _ := json.Marshal(map[string]any{
		"version": "1.0", "timestamp": "2026-12-05T21:00:00.000Z",
		"requestContext": map[string]any{"requestId": "r-1", "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:transform:$LATEST",
			"condition": "RetriesExhausted", "approximateInvokeCount": 3},
		"requestPayload":  json.RawMessage(ev),
		"responseContext": map[string]any{"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
		"responsePayload": map[string]any{"errorMessage": "transform: get s3://...: timeout", "errorType": "wrapError"},
	})
	return string(b)
}

// TestQueuesRedriveExactlyOnce: a dead-letter queue in moto holds an EventBridge rule DLQ
// message (the S3 event itself), Lambda on-failure records (the event wrapped; one of them a
// second copy of the same event) and a message that holds no event. Redrive puts the events
// back on moto's bus — as source ferry.redrive, since EventBridge refuses aws.* sources from
// PutEvents — deletes what the bus accepted and leaves the rest. A rule routes the redriven
// events to a queue standing in for the transform Lambda, whose handler on versitygw processes
// each file exactly once.
func TestQueuesRedriveExactlyOnce(t *testing.T) {
	p := newPipeline(t)
	moto := testtool.Moto(t)
	sqsc, ebc := awsClients(moto)
	ctx := testCtx(t)
	dlq, _ := queue(t, sqsc, "ferry-transform-dlq")
	target, targetARN := queue(t, sqsc, "ferry-transform-target")
	if _, err := ebc.PutRule(ctx, &awseventbridge.PutRuleInput{Name: aws.String("ferry-transform"),
		EventPattern: aws.String(`{"source":["aws.s3","ferry.redrive"],"detail-type":["Object Created"]}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ebc.PutTargets(ctx, &awseventbridge.PutTargetsInput{Rule: aws.String("ferry-transform"),
		Targets: []ebtypes.Target{{Id: aws.String("transform"), Arn: aws.String(targetARN)}}}); err != nil {
		t.Fatal(err)
	}
	x := p.upload(t, "incoming/ana/x.csv", "id\n1\n")
	y := p.upload(t, "incoming/ana/y.csv", "id\n2\n")
	for _, body := range []string{string(x), lambdaRecord(y), lambdaRecord(x), "not an event"} {
		if _, err := sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}

	q := redrive.Queues{SQS: sqsc, Events: ebc, Queues: []string{"ferry-transform-dlq"}, Hold: 30}
	var listed []redrive.Result
	n, err := q.Redrive(ctx, true, func(r redrive.Result) { listed = append(listed, r) })
	if err != nil || n != 3 || len(listed) != 4 {
		t.Fatalf("dry run: %d redriven, %d listed, %v", n, len(listed), err)
	}
	if d := depth(t, sqsc, dlq); d != 4 {
		t.Fatalf("after the dry run the queue shows %d messages, want all 4 again", d)
	}
	bad := 0
	for _, r := range listed {
		if r.Err != nil {
			bad++
			continue
		}
		if !strings.Contains(r.Describe(), `"Object Created" s3://`+p.srv.Bucket+"/incoming/ana/") {
			t.Errorf("listed %q", r.Describe())
		}
		if strings.Contains(r.Describe(), "y.csv") && !strings.Contains(r.LastError, "RetriesExhausted: wrapError: transform: get") {
			t.Errorf("the Lambda record's error: %q", r.LastError)
		}
	}
	if bad != 1 {
		t.Errorf("%d unreadable messages listed, want 1", bad)
	}

	var results []redrive.Result
	n, err = q.Redrive(ctx, false, func(r redrive.Result) { results = append(results, r) })
	if err != nil || n != 3 {
		t.Fatalf("redrive: %d, %v: %+v", n, err, results)
	}
	if d := depth(t, sqsc, dlq); d != 0 { // the unreadable one is hidden for Hold, not deleted
		t.Errorf("%d messages visible in the DLQ", d)
	}

	// The bus delivered the three events to the rule's target: hand each to the transform.
	var delivered [][]byte
	testtool.Eventually(t, 20*time.Second, "three deliveries", func() bool {
		out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(target), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			delivered = append(delivered, []byte(aws.ToString(m.Body)))
		}
		return len(delivered) >= 3
	})
	for _, ev := range delivered {
		env, err := event.DecodeEnvelope(ev)
		if err != nil || env.Source != event.SourceRedrive {
			t.Fatalf("delivered %s: %v", ev, err)
		}
		if err := p.transform.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if outs := p.outputs(t); strings.Join(outs, " ") != "processed/ana/x.jsonl processed/ana/y.jsonl" {
		t.Errorf("outputs %q", outs)
	}
	if n := p.emitted.count(); n != 2 {
		t.Errorf("%d File events for 2 files (x.csv was redriven twice)", n)
	}
}

// A message is deleted only when PutEvents accepted its entry: an entry the bus refuses stays
// in the queue for the next run.
func TestQueuesKeepRefusedEntries(t *testing.T) {
	moto := testtool.Moto(t)
	sqsc, _ := awsClients(moto)
	fake := fakeaws.Start(t)
	_, ebc := awsClients(fake.URL)
	ctx := testCtx(t)
	dlq, _ := queue(t, sqsc, "dlq")
	mk := func(key string) string {
		ev, err := event.NewObjectCreated(event.S3Change{Account: "1", Region: "us-east-1", Bucket: "b", Key: key, Size: 1,
			ETag: "e", Sequencer: "01", Requester: "1", Reason: event.ReasonPutObject})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(ev)
		return string(b)
	}
	for _, k := range []string{"ok.csv", "refused.csv"} {
		if _, err := sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String(mk(k))}); err != nil {
			t.Fatal(err)
		}
	}
	fake.RefuseEvents(func(e fakeaws.PutEventsEntry) string {
		if strings.Contains(e.Detail, "refused.csv") {
			return "ThrottlingException"
		}
		return ""
	})
	q := redrive.Queues{SQS: sqsc, Events: ebc, Bus: "ferry", Queues: []string{dlq}, Hold: 1}
	var results []redrive.Result
	n, err := q.Redrive(ctx, false, func(r redrive.Result) { results = append(results, r) })
	if err != nil || n != 1 || len(results) != 2 {
		t.Fatalf("redrive %d %v %+v", n, err, results)
	}
	sent := fake.Events()
	if len(sent) != 1 || sent[0].Source != event.SourceRedrive || sent[0].EventBusName != "ferry" || sent[0].DetailType != "Object Created" {
		t.Errorf("PutEvents entries %+v", sent)
	}
	time.Sleep(1100 * time.Millisecond) // Hold passes: the refused one is visible again
	out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlq), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 || !strings.Contains(aws.ToString(out.Messages[0].Body), "refused.csv") {
		t.Errorf("left in the queue: %+v", out.Messages)
	}
}
