package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// LedgerAPI is the S3 calls the ledger makes; *s3.Client satisfies it.
type LedgerAPI interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// busyWait bounds how long a handler waits for a concurrent delivery of the same fact.
const busyWait = 10 * time.Second

// DefaultLedgerPrefix is where ledger objects live in the ledger bucket. The transform handler
// never routes keys under it.
const DefaultLedgerPrefix = ".ferry/ledger/"

// Ledger records, in S3, which facts were handled, with conditional writes: a claim is a
// PutObject with If-None-Match: * (412 = someone claimed it before), so two deliveries of one
// event cannot both act. A claim is "pending" until Done; a pending claim older than Stale is
// taken over (the claimant died), with If-Match on the claim's etag so only one taker wins.
type Ledger struct {
	api    LedgerAPI
	bucket string
	prefix string
	// Stale is how old a pending claim must be before another delivery takes it over; it must
	// exceed the longest run of a handler (Lambda: 15 min). Default 20 min.
	Stale time.Duration
	now   func() time.Time
}

// NewLedger returns a ledger in bucket under prefix ("" = DefaultLedgerPrefix).
func NewLedger(api LedgerAPI, bucket, prefix string) *Ledger {
	if prefix == "" {
		prefix = DefaultLedgerPrefix
	}
	return &Ledger{api: api, bucket: bucket, prefix: prefix, Stale: 20 * time.Minute, now: time.Now}
}

// Bucket and Prefix say where the ledger lives.
func (l *Ledger) Bucket() string { return l.bucket }
func (l *Ledger) Prefix() string { return l.prefix }

// Claim outcomes.
type ClaimState int

const (
	Claimed ClaimState = iota // this caller owns the fact now; call Done or Release
	Done                      // handled before; the record holds what Done stored
	Busy                      // another delivery is handling it right now; retry later
)

// ErrBusy is returned by handlers when another delivery holds a fresh claim: a retry later
// finds the fact done.
var ErrBusy = errors.New("handler: another delivery is handling this event")

type ledgerRecord struct {
	State  string          `json:"state"` // pending | done
	At     time.Time       `json:"at"`
	Result json.RawMessage `json:"result,omitempty"`
}

func (l *Ledger) key(name string) string { return l.prefix + name }

// Claim tries to take the fact name. For Done it returns the stored result.
func (l *Ledger) Claim(ctx context.Context, name string) (ClaimState, json.RawMessage, error) {
	pending, _ := json.Marshal(ledgerRecord{State: "pending", At: l.now().UTC()})
	_, err := l.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(l.bucket), Key: aws.String(l.key(name)), Body: bytes.NewReader(pending),
		IfNoneMatch: aws.String("*"), ContentType: aws.String("application/json"),
	})
	switch {
	case err == nil:
		return Claimed, nil, nil
	case isStatus(err, http.StatusConflict):
		return Busy, nil, nil // ConditionalRequestConflict: a concurrent claim
	case !isStatus(err, http.StatusPreconditionFailed):
		return 0, nil, fmt.Errorf("ledger claim %s: %w", name, err)
	}
	rec, etag, err := l.read(ctx, name)
	if errors.Is(err, errGone) {
		return Busy, nil, nil // released between our put and read; a retry claims it
	}
	if err != nil {
		return 0, nil, err
	}
	if rec.State == "done" {
		return Done, rec.Result, nil
	}
	if l.now().Sub(rec.At) < l.Stale {
		return Busy, nil, nil
	}
	_, err = l.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(l.bucket), Key: aws.String(l.key(name)), Body: bytes.NewReader(pending),
		IfMatch: aws.String(etag), ContentType: aws.String("application/json"),
	})
	switch {
	case err == nil:
		return Claimed, nil, nil
	case isStatus(err, http.StatusPreconditionFailed), isStatus(err, http.StatusConflict):
		return Busy, nil, nil
	default:
		return 0, nil, fmt.Errorf("ledger take over stale claim %s: %w", name, err)
	}
}

// ClaimWait is Claim that, while another delivery holds a fresh claim, polls for up to wait:
// a duplicate delivered at the same moment as the original then sees Done instead of failing
// (and spending one of Lambda's two retries).
func (l *Ledger) ClaimWait(ctx context.Context, name string, wait time.Duration) (ClaimState, json.RawMessage, error) {
	deadline := time.Now().Add(wait)
	delay := 50 * time.Millisecond
	for {
		state, res, err := l.Claim(ctx, name)
		if err != nil || state != Busy || time.Now().Add(delay).After(deadline) {
			return state, res, err
		}
		select {
		case <-ctx.Done():
			return Busy, nil, nil
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

var errGone = errors.New("ledger record gone")

func (l *Ledger) read(ctx context.Context, name string) (ledgerRecord, string, error) {
	out, err := l.api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.bucket), Key: aws.String(l.key(name))})
	if isStatus(err, http.StatusNotFound) {
		return ledgerRecord{}, "", errGone
	}
	if err != nil {
		return ledgerRecord{}, "", fmt.Errorf("ledger read %s: %w", name, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, 1<<20))
	if err != nil {
		return ledgerRecord{}, "", fmt.Errorf("ledger read %s: %w", name, err)
	}
	var rec ledgerRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return ledgerRecord{}, "", fmt.Errorf("ledger record %s: %w", name, err)
	}
	return rec, aws.ToString(out.ETag), nil
}

// Done marks name handled and stores result (returned by later Claims).
func (l *Ledger) Done(ctx context.Context, name string, result any) error {
	res, err := json.Marshal(result)
	if err != nil {
		return fmt.Errorf("ledger done %s: %w", name, err)
	}
	data, _ := json.Marshal(ledgerRecord{State: "done", At: l.now().UTC(), Result: res})
	if _, err := l.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(l.bucket), Key: aws.String(l.key(name)), Body: bytes.NewReader(data),
		ContentType: aws.String("application/json"),
	}); err != nil {
		return fmt.Errorf("ledger done %s: %w", name, err)
	}
	return nil
}

// Has reports whether name is marked done.
func (l *Ledger) Has(ctx context.Context, name string) (bool, error) {
	rec, _, err := l.read(ctx, name)
	if errors.Is(err, errGone) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return rec.State == "done", nil
}

// Release drops a claim so a retry can take it (the handler failed).
func (l *Ledger) Release(ctx context.Context, name string) error {
	if _, err := l.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(l.bucket), Key: aws.String(l.key(name))}); err != nil {
		return fmt.Errorf("ledger release %s: %w", name, err)
	}
	return nil
}

// Put stores a plain record (batch members) without conditions.
func (l *Ledger) Put(ctx context.Context, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("ledger put %s: %w", name, err)
	}
	if _, err := l.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(l.bucket), Key: aws.String(l.key(name)), Body: bytes.NewReader(data),
		ContentType: aws.String("application/json"),
	}); err != nil {
		return fmt.Errorf("ledger put %s: %w", name, err)
	}
	return nil
}

// List returns the names and contents of the records under dir (a name prefix), in key order.
func (l *Ledger) List(ctx context.Context, dir string) (names []string, values []json.RawMessage, err error) {
	p := s3.NewListObjectsV2Paginator(l.api, &s3.ListObjectsV2Input{Bucket: aws.String(l.bucket), Prefix: aws.String(l.key(dir))})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("ledger list %s: %w", dir, err)
		}
		for _, o := range page.Contents {
			name := aws.ToString(o.Key)[len(l.prefix):]
			out, err := l.api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.bucket), Key: o.Key})
			if isStatus(err, http.StatusNotFound) {
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("ledger list %s: %w", name, err)
			}
			data, err := io.ReadAll(io.LimitReader(out.Body, 1<<20))
			out.Body.Close()
			if err != nil {
				return nil, nil, fmt.Errorf("ledger list %s: %w", name, err)
			}
			names = append(names, name)
			values = append(values, data)
		}
	}
	return names, values, nil
}

// isStatus reports whether err is an S3 response with HTTP status code.
func isStatus(err error, code int) bool {
	if err == nil {
		return false
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == code {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch code {
		case http.StatusPreconditionFailed:
			return ae.ErrorCode() == "PreconditionFailed"
		case http.StatusNotFound:
			return ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NotFound"
		case http.StatusConflict:
			return ae.ErrorCode() == "ConditionalRequestConflict"
		}
	}
	return false
}
