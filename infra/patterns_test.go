package infra_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ferrygw/ferry/pipeline/bus"
	"github.com/ferrygw/ferry/pipeline/event"
)

// observedEvent is one event the embedded default really emitted, with what it is.
type observedEvent struct {
	kind string // see classify
	raw  []byte
	ev   struct {
		Source     string          `json:"source"`
		DetailType string          `json:"detail-type"`
		Resources  []string        `json:"resources"`
		Time       time.Time       `json:"time"`
		Detail     json.RawMessage `json:"detail"`
	}
}

// Which rule must match each kind of event. A directory marker under a routed prefix matches
// the transform rule: EventBridge cannot say "starts with incoming/ AND does not end with /" of
// one field (a field's values are ORed, a rule's fields ANDed, and no other field of an S3 event
// tells a marker from an empty file), and the transform handler drops markers before any S3
// call (event.S3Object.IsDirectoryMarker). Everything the pipeline writes is outside the routed
// prefixes, so the Lambda is never invoked for its own writes.
var ruleMatches = map[string]struct{ transform, notify bool }{
	"SFTP upload (routed)":                   {true, false},
	"S3-native upload (routed)":              {true, false},
	"S3-native upload (extra routed prefix)": {true, false},
	"directory marker (routed prefix)":       {true, false},
	"pipeline output":                        {false, false},
	"quarantine copy":                        {false, false},
	"ledger record":                          {false, false},
	"status record":                          {false, false}, // ferry status's per-file records (pipeline/tracking)
	"object deleted":                         {false, false},
	"gateway event":                          {false, false},
	"pipeline event File Processed":          {false, true},
	"pipeline event File Rejected":           {false, true},
}

// withRedriven adds, for every S3 event, the event `ferry redrive` puts back on the bus for it:
// the same detail-type and detail under source ferry.redrive (PutEvents refuses aws.* sources).
// It must be judged as the original is. A probe field in the detail tells the copy apart in
// moto's deliveries; no pattern looks at it.
func withRedriven(t *testing.T, events []*observedEvent) []*observedEvent {
	t.Helper()
	out := events
	for _, e := range events {
		if e.ev.Source != "aws.s3" {
			continue
		}
		var env map[string]any
		if err := json.Unmarshal(e.raw, &env); err != nil {
			t.Fatal(err)
		}
		env["source"] = event.SourceRedrive
		env["detail"].(map[string]any)["ferry-probe"] = "redriven"
		raw, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		c := &observedEvent{raw: raw}
		if err := json.Unmarshal(raw, &c.ev); err != nil {
			t.Fatal(err)
		}
		c.kind = classify(c)
		out = append(out, c)
	}
	return out
}

func classify(e *observedEvent) string {
	var d struct {
		Object struct {
			Key string `json:"key"`
		} `json:"object"`
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(e.ev.Detail, &d)
	key := d.Object.Key
	switch {
	case e.ev.Source == "ferry.gateway":
		return "gateway event"
	case e.ev.Source == "ferry.pipeline":
		return "pipeline event " + e.ev.DetailType
	case e.ev.Source == event.SourceRedrive:
		c := *e
		c.ev.Source = "aws.s3"
		return "redriven " + classify(&c)
	case e.ev.Source != "aws.s3":
		return "unknown source " + e.ev.Source
	case e.ev.DetailType == "Object Deleted":
		return "object deleted"
	case e.ev.DetailType != "Object Created":
		return "unknown S3 event " + e.ev.DetailType
	case strings.HasPrefix(key, ".ferry/ledger/status/"), strings.HasPrefix(key, ".ferry/ledger/transfer/"):
		return "status record"
	case strings.HasPrefix(key, ".ferry/ledger/"):
		return "ledger record"
	case strings.HasPrefix(key, "processed/"):
		return "pipeline output"
	case strings.HasPrefix(key, "quarantine/"):
		return "quarantine copy"
	case strings.HasPrefix(key, "incoming/demo/sub/") && strings.HasSuffix(key, "/"):
		return "directory marker (routed prefix)"
	case strings.HasPrefix(key, "incoming/demo/"):
		return "SFTP upload (routed)"
	case strings.HasPrefix(key, "incoming/partner/"):
		return "S3-native upload (routed)"
	case strings.HasPrefix(key, "drop/"):
		return "S3-native upload (extra routed prefix)"
	}
	return "unclassified key " + key
}

// TestPatterns runs the embedded default for real (SFTP uploads of routed files, S3-native
// uploads, a directory marker; the pipeline writes outputs, a quarantine copy and ledger
// records), collects every event it emitted, and has two implementations judge the rule
// patterns deployed from the templates: the bus's quamina matcher (pipeline/bus) and moto's
// EventBridge (each deployed rule's pattern on a copy with an SQS target).
func TestPatterns(t *testing.T) {
	d := deploy(t)
	events := withRedriven(t, embeddedEvents(t))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	eb := eventbridge.NewFromConfig(d.moto.awsConfig())
	patterns := map[string]string{}
	for _, rule := range []string{"transform", "notify"} {
		r, err := eb.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(testStack + "-" + rule)})
		if err != nil {
			t.Fatal(err)
		}
		patterns[rule] = aws.ToString(r.EventPattern)
		t.Logf("%s rule pattern (deployed from pipeline.yaml): %s", rule, patterns[rule])
	}

	// Judge 1: the bus's matcher.
	byBus := map[string]map[int]bool{}
	for rule, p := range patterns {
		m, err := bus.CompilePattern(p)
		if err != nil {
			t.Fatalf("the bus cannot evaluate the %s pattern: %v", rule, err)
		}
		byBus[rule] = map[int]bool{}
		for i, e := range events {
			ok, err := m.Matches(e.raw)
			if err != nil {
				t.Fatalf("bus match %s: %v", e.raw, err)
			}
			byBus[rule][i] = ok
		}
	}
	// Judge 2: moto's EventBridge, through the rules' patterns on copies with an SQS target.
	byMoto := motoMatches(ctx, t, d, patterns, events)

	for i, e := range events {
		exp, known := ruleMatches[strings.TrimPrefix(e.kind, "redriven ")] // judged as the original
		if !known {
			t.Errorf("event of unexpected kind %q: %s", e.kind, e.raw)
			continue
		}
		for rule, wantMatch := range map[string]bool{"transform": exp.transform, "notify": exp.notify} {
			if byBus[rule][i] != wantMatch {
				t.Errorf("bus: %s rule matched=%v, want %v for %s: %s", rule, byBus[rule][i], wantMatch, e.kind, e.raw)
			}
			if byMoto[rule][i] != wantMatch {
				t.Errorf("moto: %s rule matched=%v, want %v for %s: %s", rule, byMoto[rule][i], wantMatch, e.kind, e.raw)
			}
		}
	}
	kinds := map[string]int{}
	for _, e := range events {
		kinds[e.kind]++
	}
	var names []string
	for k := range ruleMatches {
		names = append(names, k)
		if kinds[k] == 0 && k != "object deleted" {
			t.Errorf("the embedded default emitted no %q event: the check would prove nothing about it", k)
		}
	}
	if kinds["redriven SFTP upload (routed)"] == 0 || kinds["redriven ledger record"] == 0 {
		t.Errorf("no redriven copies were judged: %v", kinds)
	}
	sort.Strings(names)
	for _, k := range names {
		t.Logf("%-40s %3d events, must match: transform=%-5v notify=%v", k, kinds[k], ruleMatches[k].transform, ruleMatches[k].notify)
	}
}

// embeddedEvents runs ferry serve with the embedded default and returns every event it logged.
func embeddedEvents(t *testing.T) []*observedEvent {
	t.Helper()
	f := startEmbedded(t, "")
	c, err := f.sftpClient(t, demoUser, demoPassword)
	if err != nil {
		t.Fatal(err)
	}
	f.sftpPut(t, c, "/good.csv", "id,name\n1,alice\n2,bob\n")
	f.sftpPut(t, c, "/bad.csv", "id,name,age\n1,a,30\n2,b\n") // ragged: quarantined
	if err := c.Mkdir("/sub"); err != nil {
		t.Fatalf("sftp mkdir: %v", err)
	}
	f.putObject(t, "incoming/partner/native.csv", "id,v\n1,x\n")
	f.putObject(t, "drop/acme/native.csv", "id,v\n1,y\n") // routed by the template, not by the routes

	// The pipeline has done its work when it published both processed files and the rejection
	// and the notify handler marked all three sent in the ledger.
	dir := filepath.Join(f.dir, "events")
	deadline := time.Now().Add(45 * time.Second)
	for {
		counts := map[string]int{}
		for _, e := range readEvents(t, dir) {
			counts[e.kind]++
		}
		outbox, _ := os.ReadFile(filepath.Join(f.dir, "outbox.jsonl"))
		if counts["pipeline event File Processed"] >= 2 && counts["pipeline event File Rejected"] >= 1 &&
			counts["quarantine copy"] >= 1 && bytes.Count(outbox, []byte("\n")) >= 3 &&
			len(f.keys(t, ".ferry/ledger/notify/")) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the embedded pipeline did not finish within 45s: %v\n%s", counts, tail(f.log.String(), 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The embedded bus leaves the ledger's own writes off the bus (they are bookkeeping, not
	// arrivals); on AWS, S3 emits Object Created for each, which the deployed rules must ignore.
	// They are judged as S3 would send them: one event per object the pipeline wrote under .ferry/.
	own := ownRecordEvents(t, f.keys(t, ".ferry/"))
	f.stop(t)
	return append(readEvents(t, dir), own...)
}

// ownRecordEvents builds the Object Created event S3 sends for each key, as for any other write.
func ownRecordEvents(t *testing.T, keys []string) []*observedEvent {
	t.Helper()
	var out []*observedEvent
	for i, key := range keys {
		ev, err := event.NewObjectCreated(event.S3Change{Account: "000000000000", Region: "us-east-1", Bucket: testBucket,
			Key: key, Size: 1, ETag: "e", Sequencer: fmt.Sprintf("%016x", i+1), Requester: "ferry", Reason: event.ReasonPutObject})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		e := &observedEvent{raw: raw}
		if err := json.Unmarshal(raw, &e.ev); err != nil {
			t.Fatal(err)
		}
		e.kind = classify(e)
		out = append(out, e)
	}
	return out
}

func readEvents(t *testing.T, dir string) []*observedEvent {
	t.Helper()
	var out []*observedEvent
	err := bus.Follow(context.Background(), dir, false, 100*time.Millisecond, func(_ uint64, raw []byte) error {
		e := &observedEvent{raw: append([]byte(nil), raw...)}
		if err := json.Unmarshal(raw, &e.ev); err != nil {
			return fmt.Errorf("event %s: %w", raw, err)
		}
		e.kind = classify(e)
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatalf("read the event log: %v", err)
	}
	return out
}

// motoMatches puts every event on a bus of moto's where a copy of each rule (same pattern, an SQS
// target) delivers what it matches. Not the default bus: moto's EventBridge raises
// NotImplementedError for the deployed rules' Lambda targets (and cannot run Lambdas without
// Docker). Events are told apart by their detail, which EventBridge delivers unchanged.
func motoMatches(ctx context.Context, t *testing.T, d *deployment, patterns map[string]string, events []*observedEvent) map[string]map[int]bool {
	t.Helper()
	cfg := d.moto.awsConfig()
	eb := eventbridge.NewFromConfig(cfg)
	qc := sqs.NewFromConfig(cfg)
	const probeBus = "ferry-pattern-probe"
	if _, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(probeBus)}); err != nil {
		t.Fatal(err)
	}
	t.Logf("moto gap: its EventBridge cannot deliver to a Lambda target (NotImplementedError); the patterns are judged on copies of the rules with SQS targets, on bus %s", probeBus)
	queues := map[string]string{}
	for rule, p := range patterns {
		name := testStack + "-" + rule + "-probe"
		q, err := qc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		queues[rule] = aws.ToString(q.QueueUrl)
		if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(name), EventPattern: aws.String(p), EventBusName: aws.String(probeBus)}); err != nil {
			t.Fatal(err)
		}
		if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), EventBusName: aws.String(probeBus), Targets: []ebtypes.Target{{
			Id: aws.String("probe"), Arn: aws.String("arn:aws:sqs:us-east-1:123456789012:" + name)}}}); err != nil {
			t.Fatal(err)
		}
	}
	index := map[string]int{}
	for i := 0; i < len(events); i += 10 {
		var entries []ebtypes.PutEventsRequestEntry
		for j := i; j < min(i+10, len(events)); j++ {
			e := events[j]
			index[detailKey(e.ev.Source, e.ev.DetailType, e.ev.Detail)] = j
			entries = append(entries, ebtypes.PutEventsRequestEntry{
				Source: aws.String(e.ev.Source), DetailType: aws.String(e.ev.DetailType), Detail: aws.String(string(e.ev.Detail)),
				Resources: e.ev.Resources, Time: aws.Time(e.ev.Time), EventBusName: aws.String(probeBus),
			})
		}
		out, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries})
		if err != nil || out.FailedEntryCount != 0 {
			t.Fatalf("put events: %v %+v\nmoto: %s", err, out, tail(d.moto.out.String(), 3000))
		}
	}
	if len(index) != len(events) {
		t.Fatalf("%d events but %d distinct details", len(events), len(index))
	}
	matched := map[string]map[int]bool{}
	for rule, q := range queues {
		matched[rule] = map[int]bool{}
		idle := time.Now().Add(time.Second)
		for time.Now().Before(idle) {
			out, err := qc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), MaxNumberOfMessages: 10})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range out.Messages {
				var ev struct {
					Source     string          `json:"source"`
					DetailType string          `json:"detail-type"`
					Detail     json.RawMessage `json:"detail"`
				}
				if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
					t.Fatalf("moto delivered %s: %v", aws.ToString(m.Body), err)
				}
				i, ok := index[detailKey(ev.Source, ev.DetailType, ev.Detail)]
				if !ok {
					t.Fatalf("moto delivered an event that was not put: %s", aws.ToString(m.Body))
				}
				matched[rule][i] = true
				idle = time.Now().Add(time.Second)
				if _, err := qc.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q), ReceiptHandle: m.ReceiptHandle}); err != nil {
					t.Fatal(err)
				}
			}
			if len(out.Messages) == 0 {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	return matched
}

// detailKey identifies an event by what EventBridge delivers unchanged.
func detailKey(source, detailType string, detail json.RawMessage) string {
	var v any
	_ = json.Unmarshal(detail, &v)
	return source + "\x00" + detailType + "\x00" + jsonString(v)
}
