// Package inspect answers "has my file arrived?" from what Ferry already keeps: an object's
// metadata (who uploaded it, over which protocol, its SHA-256), the pipeline's ledger (what
// became of it, which notice went out), the status records beside the ledger (package
// tracking) and, in the embedded default, the local event log. Trace tells one file's story;
// Status lists the files received in a period with their state. It only reads, so it runs
// while the system runs, against a deployment on AWS (the bucket alone) or the embedded default.
package inspect

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/tracking"
)

// S3API is the S3 calls inspecting makes, all reads; *s3.Client satisfies it. An operator
// needs s3:ListBucket, s3:GetObject and s3:GetObjectTagging on the bucket.
type S3API interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObjectTagging(ctx context.Context, in *s3.GetObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

var _ S3API = (*s3.Client)(nil)

// Config says where to look.
type Config struct {
	S3 S3API
	// Bucket is the bucket a KEY without s3:// refers to, and where the ledger is unless
	// LedgerBucket says otherwise.
	Bucket       string
	LedgerBucket string
	LedgerPrefix string // "" = ledger.DefaultPrefix
	// EventsDir is the embedded default's event bus directory (its log is read for the
	// events of a file); "" on AWS, where events are not kept.
	EventsDir string
	// SearchDays bounds how many days of status records Trace searches for a key whose object
	// is gone (its etag, hence its records' names, unknown otherwise). Default 7.
	SearchDays int
	Now        func() time.Time
}

// Inspector reads a deployment's records.
type Inspector struct {
	cfg    Config
	index  tracking.Index
	ledger ledger.Reader
	recs   tracking.Reader
}

// New returns an inspector.
func New(cfg Config) (*Inspector, error) {
	if cfg.S3 == nil || cfg.Bucket == "" {
		return nil, errors.New("inspect: an S3 client and a bucket are required")
	}
	if cfg.LedgerBucket == "" {
		cfg.LedgerBucket = cfg.Bucket
	}
	if cfg.LedgerPrefix == "" {
		cfg.LedgerPrefix = ledger.DefaultPrefix
	}
	if cfg.SearchDays <= 0 {
		cfg.SearchDays = 7
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	x := tracking.New(cfg.LedgerBucket, cfg.LedgerPrefix)
	return &Inspector{
		cfg:    cfg,
		index:  x,
		ledger: ledger.Reader{API: cfg.S3, Bucket: cfg.LedgerBucket, Prefix: cfg.LedgerPrefix},
		recs:   tracking.Reader{API: cfg.S3, Index: x},
	}, nil
}
