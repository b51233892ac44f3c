package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ferrygw/ferry/pipeline/redrive"
)

// redriveCmd sends dead-lettered events back for delivery: the embedded default's dead-letter
// folder, or with --queue the deployment's SQS dead-letter queues.
func redriveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("redrive", `ferry redrive [--dir DIR] [--rule NAME]... [--dry-run] [--wait DURATION]
       ferry redrive --queue URL|NAME... [--bus NAME] [--region REGION] [--dry-run] [--max N]

Sends dead-lettered events back for delivery. Without --queue: the embedded default's
dead letters (DIR/dead-letter/<rule>/), handed to the running ferry serve (or to the next
one started). With --queue: AWS SQS dead-letter queues (a rule's DLQ holds the event, a
Lambda on-failure destination wraps it), put back on the event bus with PutEvents and
deleted once accepted. Handlers remember what they did, so an event that was handled after
all, or is redriven twice, does nothing the second time.`, stderr)
	dir := fs.String("dir", defaultEventsDir, "event bus `DIR`ectory of the embedded default")
	var rules, queues stringList
	fs.Var(&rules, "rule", "only the dead letters of this `rule` (repeatable)")
	fs.Var(&queues, "queue", "an SQS dead-letter queue `URL or name` (repeatable)")
	dryRun := fs.Bool("dry-run", false, "list what would be redriven, change nothing")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for a running ferry serve to take the events")
	busName := fs.String("bus", "", "event bus `name` or ARN for PutEvents (default: the default bus)")
	region := fs.String("region", "", "AWS `region` (default: the SDK's, e.g. AWS_REGION)")
	maxMsgs := fs.Int("max", 10000, "at most `N` messages per queue in one run")
	if _, code, ok := parse(fs, args, 0); !ok {
		return code
	}
	verb := "redriven"
	if *dryRun {
		verb = "would redrive"
	}
	failed := 0
	report := func(r redrive.Result) {
		switch {
		case r.Err != nil && !r.Redriven:
			failed++
			fmt.Fprintf(stdout, "NOT redriven  %s  %s: %v\n", r.From, r.Describe(), r.Err)
		case r.Err != nil:
			fmt.Fprintf(stdout, "%s  %s  %s (%v)\n", verb, r.From, r.Describe(), r.Err)
		default:
			line := fmt.Sprintf("%s  %s  %s", verb, r.From, r.Describe())
			if r.LastError != "" {
				line += "  (failed with: " + r.LastError + ")"
			}
			fmt.Fprintln(stdout, line)
		}
	}

	if len(queues) == 0 {
		l := redrive.Local{Dir: *dir, Rules: rules}
		n, err := l.Redrive(*dryRun, report)
		if err != nil {
			fmt.Fprintf(stderr, "redrive: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s %d event(s) from %s\n", verb, n, *dir)
		if *dryRun || n == 0 {
			return exitFor(failed)
		}
		wctx, cancel := context.WithTimeout(ctx, *wait)
		defer cancel()
		taken, running, err := l.Wait(wctx, 100*time.Millisecond)
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "redrive: %v\n", err)
			return 1
		case !running:
			fmt.Fprintf(stdout, "ferry serve is not running: the events wait in %s and are delivered when it starts\n", l.InboxDir())
		case taken:
			fmt.Fprintln(stdout, "the running ferry serve took them for delivery")
		default:
			fmt.Fprintf(stdout, "ferry serve has not taken them yet (after %s); they wait in %s\n", *wait, l.InboxDir())
		}
		return exitFor(failed)
	}

	var opts []func(*config.LoadOptions) error
	if *region != "" {
		opts = append(opts, config.WithRegion(*region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "redrive: aws config: %v\n", err)
		return 1
	}
	q := redrive.Queues{SQS: sqs.NewFromConfig(cfg), Events: awseventbridge.NewFromConfig(cfg), Bus: *busName, Queues: queues, Max: *maxMsgs}
	n, err := q.Redrive(ctx, *dryRun, report)
	fmt.Fprintf(stdout, "%s %d event(s) from %d queue(s)\n", verb, n, len(queues))
	if err != nil {
		fmt.Fprintf(stderr, "redrive: %v\n", err)
		return 1
	}
	return exitFor(failed)
}

func exitFor(failed int) int {
	if failed > 0 {
		return 1
	}
	return 0
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
