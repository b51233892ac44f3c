// Package ledger is the pipeline's idempotency ledger: records in S3, written with conditional
// requests, saying which facts (an event handled, a notice sent) were handled and with what
// result, so that a redelivered event does nothing twice and a crashed delivery is redone once.
// The same code runs against AWS and against the embedded endpoint; its tests run against
// versitygw.
package ledger

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

	"github.com/ferrygw/ferry/pipeline/s3status"
	"github.com/ferrygw/ferry/pipeline/tracking"
)

// API is the S3 calls the ledger makes; *s3.Client satisfies it.
type API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// DefaultPrefix is where ledger objects live in the ledger bucket. The transform handler
// never routes keys under it.
const DefaultPrefix = ".ferry/ledger/"

// Ledger records, in S3, which facts were handled, with conditional writes: a claim is a
// PutObject with If-None-Match: * (412 = someone claimed it before), so two deliveries of one
// event cannot both act. A claim is "pending" until Done. A pending claim is taken over (the
// claimant died) once its claimant's deadline has passed — a Lambda invocation or a bus
// delivery cannot outlive its context's deadline, which the claim records — or, for a claimant
// without a deadline, once it is older than Stale; If-Match on the claim's etag lets only one
// taker win.
type Ledger struct {
	api    API
	bucket string
	prefix string
	// Stale is how old a pending claim of a claimant without a deadline must be before another
	// delivery takes it over; it must exceed the longest run of such a handler. Default 20 min.
	Stale time.Duration
	// Skew allows for clocks that differ between the hosts that claim: a claim made under a
	// deadline is taken over this long after it. Default 10s.
	Skew time.Duration
	now  func() time.Time
}

// New returns a ledger in bucket under prefix ("" = DefaultPrefix).
func New(api API, bucket, prefix string) *Ledger {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Ledger{api: api, bucket: bucket, prefix: prefix, Stale: 20 * time.Minute, now: time.Now, Skew: claimSkew}
}

// Bucket and Prefix say where the ledger lives.
func (l *Ledger) Bucket() string { return l.bucket }
func (l *Ledger) Prefix() string { return l.prefix }

// Tracker writes the per-file status records (package tracking) beside the ledger: same
// bucket, prefix and client, so they share its lifecycle rule and its grants.
func (l *Ledger) Tracker() tracking.Writer {
	return tracking.Writer{API: l.api, Index: tracking.New(l.bucket, l.prefix)}
}

// Claim outcomes.
type ClaimState int

const (
	Claimed ClaimState = iota // this caller owns the fact now; call Done or Release
	Done                      // handled before; the record holds what Done stored
	Busy                      // another delivery is handling it right now; retry later
)

type ledgerRecord struct {
	State string    `json:"state"` // pending | done
	At    time.Time `json:"at"`
	// Until is a pending claimant's deadline: after it (plus claimSkew) the claimant is gone.
	Until  time.Time       `json:"until,omitzero"`
	Result json.RawMessage `json:"result,omitempty"`
}

// claimSkew allows for clocks that differ between the hosts that claim.
const claimSkew = 10 * time.Second

// staleAt is when a pending claim may be taken over.
func (l *Ledger) staleAt(rec ledgerRecord) time.Time {
	if !rec.Until.IsZero() {
		return rec.Until.Add(l.Skew)
	}
	return rec.At.Add(l.Stale)
}

func (l *Ledger) key(name string) string { return l.prefix + name }

// Claim tries to take the fact name. For Done it returns the stored result.
func (l *Ledger) Claim(ctx context.Context, name string) (ClaimState, json.RawMessage, error) {
	state, res, _, err := l.claim(ctx, name)
	return state, res, err
}

// claim is Claim that, for Busy, also says when the holder's claim goes stale (zero: unknown).
func (l *Ledger) claim(ctx context.Context, name string) (ClaimState, json.RawMessage, time.Time, error) {
	mine := ledgerRecord{State: "pending", At: l.now().UTC()}
	if d, ok := ctx.Deadline(); ok {
		mine.Until = d.UTC()
	}
	pending, _ := json.Marshal(mine)
	_, err := l.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(l.bucket), Key: aws.String(l.key(name)), Body: bytes.NewReader(pending),
		IfNoneMatch: aws.String("*"), ContentType: aws.String("application/json"),
	})
	switch {
	case err == nil:
		return Claimed, nil, time.Time{}, nil
	case s3status.Is(err, http.StatusConflict):
		return Busy, nil, time.Time{}, nil // ConditionalRequestConflict: a concurrent claim
	case !s3status.Is(err, http.StatusPreconditionFailed):
		return 0, nil, time.Time{}, fmt.Errorf("ledger claim %s: %w", name, err)
	}
	rec, etag, err := l.read(ctx, name)
	if errors.Is(err, errGone) {
		return Busy, nil, time.Time{}, nil // released between our put and read; a retry claims it
	}
	if err != nil {
		return 0, nil, time.Time{}, err
	}
	if rec.State == "done" {
		return Done, rec.Result, time.Time{}, nil
	}
	if stale := l.staleAt(rec); l.now().Before(stale) {
		return Busy, nil, stale, nil
	}
	_, err = l.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(l.bucket), Key: aws.String(l.key(name)), Body: bytes.NewReader(pending),
		IfMatch: aws.String(etag), ContentType: aws.String("application/json"),
	})
	switch {
	case err == nil:
		return Claimed, nil, time.Time{}, nil
	case s3status.Is(err, http.StatusPreconditionFailed), s3status.Is(err, http.StatusConflict):
		return Busy, nil, time.Time{}, nil
	default:
		return 0, nil, time.Time{}, fmt.Errorf("ledger take over stale claim %s: %w", name, err)
	}
}

// ClaimWait is Claim that, while another delivery holds a fresh claim, polls for up to wait:
// a duplicate delivered at the same moment as the original then sees Done instead of failing
// (and spending one of Lambda's two retries). When the holder's claim goes stale within this
// caller's own deadline (its claimant died; this is a retry), it waits for that moment too and
// takes the claim over, so a crashed delivery is redone by the next one instead of every retry
// failing until the event is dead-lettered.
func (l *Ledger) ClaimWait(ctx context.Context, name string, wait time.Duration) (ClaimState, json.RawMessage, error) {
	deadline := time.Now().Add(wait)
	delay := 50 * time.Millisecond
	for {
		state, res, stale, err := l.claim(ctx, name)
		if err != nil || state != Busy {
			return state, res, err
		}
		until := deadline
		if own, ok := ctx.Deadline(); ok && !stale.IsZero() && stale.Add(claimReserve).Before(own) && stale.After(until) {
			until = stale.Add(time.Second)
		}
		if time.Now().Add(delay).After(until) {
			return state, res, err
		}
		select {
		case <-ctx.Done():
			return Busy, nil, nil
		case <-time.After(delay):
		}
		poll := time.Second // a duplicate is usually done within the first seconds
		if time.Now().After(deadline) {
			poll = maxPoll // waiting for a dead claimant's deadline: no hurry
		}
		delay = min(2*delay, poll)
	}
}

// claimReserve is the time a caller must have left after taking over a stale claim for the
// wait to be worth it; maxPoll spaces the polls of a long wait.
const (
	claimReserve = 30 * time.Second
	maxPoll      = 5 * time.Second
)

var errGone = errors.New("ledger record gone")

func (l *Ledger) read(ctx context.Context, name string) (ledgerRecord, string, error) {
	return readRecord(ctx, l.api, l.bucket, l.key(name), name)
}

// getAPI is the one call reading a record needs.
type getAPI interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

func readRecord(ctx context.Context, api getAPI, bucket, key, name string) (ledgerRecord, string, error) {
	out, err := api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if s3status.Is(err, http.StatusNotFound) {
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

// doneFor bounds how long Done keeps trying.
const doneFor = 30 * time.Second

// Entry is a ledger record as read back (Get).
type Entry struct {
	State  string          `json:"state"` // "pending" (claimed, not done) or "done"
	At     time.Time       `json:"at"`    // when it was claimed or marked done
	Until  time.Time       `json:"until,omitzero"`
	Result json.RawMessage `json:"result,omitempty"` // what Done stored
}

// Get reads the record name; ok is false when there is none.
func (l *Ledger) Get(ctx context.Context, name string) (e Entry, ok bool, err error) {
	return Reader{API: l.api, Bucket: l.bucket, Prefix: l.prefix}.Get(ctx, name)
}

// Reader reads a ledger with GetObject alone: what `ferry trace` needs, with the
// operator's read-only credentials.
type Reader struct {
	API interface {
		GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	}
	Bucket string
	Prefix string // "" = DefaultPrefix
}

// Get reads the record name; ok is false when there is none.
func (r Reader) Get(ctx context.Context, name string) (e Entry, ok bool, err error) {
	prefix := r.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	rec, _, err := readRecord(ctx, r.API, r.Bucket, prefix+name, name)
	if errors.Is(err, errGone) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, err
	}
	return Entry{State: rec.State, At: rec.At, Until: rec.Until, Result: rec.Result}, true, nil
}

// Done marks name handled and stores result (returned by later Claims). Like Release it
// outlives a cancelled ctx: the work is done, and not saying so would have it redone. For the
// same reason it keeps trying for up to doneFor when S3 fails even after the SDK's retries: a
// notification that was sent but not marked is sent again by the next delivery of its event,
// which nothing downstream can undo.
func (l *Ledger) Done(ctx context.Context, name string, result any) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), doneFor)
	defer cancel()
	res, err := json.Marshal(result)
	if err != nil {
		return fmt.Errorf("ledger done %s: %w", name, err)
	}
	data, _ := json.Marshal(ledgerRecord{State: "done", At: l.now().UTC(), Result: res})
	for pause := 200 * time.Millisecond; ; pause = min(2*pause, 3*time.Second) {
		_, err := l.api.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(l.bucket), Key: aws.String(l.key(name)), Body: bytes.NewReader(data),
			ContentType: aws.String("application/json"),
		})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ledger done %s: %w", name, err)
		case <-time.After(pause):
		}
	}
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

// Release drops a claim so a retry can take it (the handler failed). It runs even when ctx is
// cancelled — a handler usually fails because its context ended — as a claim left pending
// would hold every retry off until the claimant's deadline.
func (l *Ledger) Release(ctx context.Context, name string) error {
	ctx, cancel := detached(ctx)
	defer cancel()
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
			if s3status.Is(err, http.StatusNotFound) {
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

// detached is ctx without its cancellation, bounded by a short timeout of its own: for the
// ledger writes that record the outcome of work whose context may just have ended.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}
