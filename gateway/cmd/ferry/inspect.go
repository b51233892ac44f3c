package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/app"
	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/pipeline/inspect"
)

// inspectFlags are where `ferry trace` and `ferry status` look: the config's bucket, S3
// endpoint and event log (the embedded default), or, for a deployment on AWS, --bucket with
// the SDK's usual credentials and region.
type inspectFlags struct {
	config, bucket, ledgerPrefix, events, region string
	jsonOut                                      bool
}

func (f *inspectFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", defaultConfig, "config `FILE`: its bucket, S3 endpoint and (embedded) event log")
	fs.StringVar(&f.bucket, "bucket", "", "the deployment's `BUCKET` (on AWS: where the ledger is; overrides the config's)")
	fs.StringVar(&f.ledgerPrefix, "ledger-prefix", "", "the ledger's key `PREFIX` (default .ferry/ledger/, LEDGER_PREFIX of the Lambdas)")
	fs.StringVar(&f.events, "events", "", "the embedded event bus `DIR` (default: the config's embedded.events.dir)")
	fs.StringVar(&f.region, "region", "", "AWS `region` with --bucket and no config (default: the SDK's, e.g. AWS_REGION)")
	fs.BoolVar(&f.jsonOut, "json", false, "print JSON")
}

// open builds the inspector. Without a config file, --bucket is required and S3 is reached
// with the SDK's defaults (a deployment on AWS, where no event log is kept).
func (f *inspectFlags) open(ctx context.Context) (*inspect.Inspector, error) {
	cfg, err := config.Read(f.config, func(string) (string, bool) { return "", true })
	var client inspect.S3API
	switch {
	case err == nil:
		c, cerr := app.S3Client(ctx, cfg)
		if cerr != nil {
			return nil, cerr
		}
		client = c
		if f.bucket == "" {
			f.bucket = cfg.Storage.S3.Bucket
		}
		if f.events == "" && cfg.Embedded.S3.Enabled() {
			f.events = cfg.Embedded.Events.Dir
		}
	case f.bucket != "" && errors.Is(err, fs.ErrNotExist):
		c, cerr := s3store.NewClient(ctx, s3store.ClientConfig{Region: f.region})
		if cerr != nil {
			return nil, cerr
		}
		client = c
	default:
		return nil, fmt.Errorf("%w (on AWS without a config file, name the bucket with --bucket)", err)
	}
	return inspect.New(inspect.Config{S3: client, Bucket: f.bucket, LedgerPrefix: f.ledgerPrefix, EventsDir: f.events})
}

// traceCmd prints the story of one file: by key, s3:// URL or transfer id.
func traceCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("trace", `ferry trace [--config FILE | --bucket BUCKET] [--json] KEY|s3://BUCKET/KEY|TRANSFER-ID

Prints one file's story in order: who uploaded it, over which protocol, when, its size and
SHA-256, the events, what the transform made of it (outputs, or quarantine and why) and the
notice that went out (dataset, when, message id). It reads the object's metadata, the
pipeline's ledger and status records in the bucket and, in the embedded default, the local
event log; it changes nothing.`, stderr)
	var f inspectFlags
	f.register(fs)
	pos, code, ok := parse(fs, args, 1)
	if !ok {
		return code
	}
	in, err := f.open(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "trace: %v\n", err)
		return 1
	}
	stories, err := in.Trace(ctx, pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "trace: %v\n", err)
		return 1
	}
	if f.jsonOut {
		return writeJSON(stdout, stderr, "trace", stories)
	}
	for i, st := range stories {
		if i > 0 {
			fmt.Fprintln(stdout, strings.Repeat("-", 72))
		}
		if err := inspect.WriteStory(stdout, st); err != nil {
			fmt.Fprintf(stderr, "trace: %v\n", err)
			return 1
		}
	}
	return 0
}

// statusCmd lists the files received in a period and how far each got.
func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", `ferry status [--since 24h|DATE] [--user U] [--dataset D] [--json] [--config FILE | --bucket BUCKET]

Lists the files received since then (oldest first) with their state: received, waiting (for a
batch marker or a checksum sidecar), processed, rejected, copy (of content already processed),
notified. It lists the pipeline's status records in the bucket, one listing per day.`, stderr)
	var f inspectFlags
	f.register(fs)
	since := fs.String("since", "24h", "a `DURATION` back from now (24h, 90m) or a date/time (2026-12-01, RFC 3339)")
	user := fs.String("user", "", "only this `user`'s files")
	dataset := fs.String("dataset", "", "only this `dataset`'s files")
	if _, code, ok := parse(fs, args, 0); !ok {
		return code
	}
	from, err := parseSince(*since, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "status: --since: %v\n", err)
		return 2
	}
	in, err := f.open(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "status: %v\n", err)
		return 1
	}
	files, err := in.Status(ctx, inspect.Query{Since: from, User: *user, Dataset: *dataset})
	if err != nil {
		fmt.Fprintf(stderr, "status: %v\n", err)
		return 1
	}
	if f.jsonOut {
		if files == nil {
			files = []inspect.File{}
		}
		return writeJSON(stdout, stderr, "status", files)
	}
	if len(files) == 0 {
		fmt.Fprintf(stdout, "no files received since %s\n", from.UTC().Format(time.DateTime+" UTC"))
		return 0
	}
	if err := inspect.WriteStatus(stdout, files); err != nil {
		fmt.Fprintf(stderr, "status: %v\n", err)
		return 1
	}
	return 0
}

// parseSince reads --since: a duration back from now, or a date or RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration back from now must be positive", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (24h) nor a date (2026-12-01) nor an RFC 3339 time", s)
}

func writeJSON(stdout, stderr io.Writer, cmd string, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return 1
	}
	return 0
}
