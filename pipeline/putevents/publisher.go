// Package putevents publishes Ferry's events to Amazon EventBridge with PutEvents, in the
// background: callers (the gateway at the end of a transfer, the Lambdas) hand over an entry
// and move on. Publishing never blocks and never fails the caller's work; when EventBridge is
// slow or down the bounded queue fills and further entries are dropped and counted.
//
// Entries go out in batches of at most 10 and under the request size limit. PutEvents answers
// per entry; only the entries that failed are sent again, with exponential backoff, up to
// MaxAttempts, after which they are logged and counted as failed. Delivery is at least once:
// a retry after a lost response can duplicate an event, which consumers must tolerate anyway.
package putevents

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/ferrygw/ferry/pipeline/backoff"
)

// API is the one SDK call the publisher makes; *putevents.Client satisfies it.
type API interface {
	PutEvents(ctx context.Context, in *awseventbridge.PutEventsInput, optFns ...func(*awseventbridge.Options)) (*awseventbridge.PutEventsOutput, error)
}

var _ API = (*awseventbridge.Client)(nil)

// Config tunes a Publisher. Zero values take the defaults noted.
//
// MaxAttempts counts PutEvents calls made by the publisher. An SDK client with its standard
// retryer also retries throttled and 5xx calls itself (3 tries by default) inside each of them.
type Config struct {
	BusName         string        // event bus name or ARN; default "default"
	QueueSize       int           // entries waiting to be sent; default 10000
	BatchMax        int           // entries per PutEvents call, 1..10; default 10
	MaxRequestBytes int           // summed Entry.Size per call; default DefaultMaxRequestBytes
	FlushInterval   time.Duration // how long a partial batch waits for more entries; default 200ms
	MaxAttempts     int           // sends per entry, the first included; default 5
	Backoff         time.Duration // wait before the first resend, doubled each time; default 100ms
	MaxBackoff      time.Duration // cap on that wait; default 5s
	CallTimeout     time.Duration // bound on one PutEvents call; default 10s
}

func (c Config) withDefaults() (Config, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.BusName == "" {
		c.BusName = "default"
	}
	def(&c.QueueSize, 10000)
	def(&c.BatchMax, MaxBatchEntries)
	def(&c.MaxRequestBytes, DefaultMaxRequestBytes)
	def(&c.MaxAttempts, 5)
	defDur(&c.FlushInterval, 200*time.Millisecond)
	defDur(&c.Backoff, 100*time.Millisecond)
	defDur(&c.MaxBackoff, 5*time.Second)
	defDur(&c.CallTimeout, 10*time.Second)
	var errs []error
	if c.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("queue size %d is negative", c.QueueSize))
	}
	if c.BatchMax < 1 || c.BatchMax > MaxBatchEntries {
		errs = append(errs, fmt.Errorf("batch max %d not in 1..%d", c.BatchMax, MaxBatchEntries))
	}
	if c.MaxRequestBytes < 1 {
		errs = append(errs, fmt.Errorf("max request bytes %d is not positive", c.MaxRequestBytes))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("max attempts %d is not positive", c.MaxAttempts))
	}
	if c.FlushInterval < 0 || c.Backoff < 0 || c.MaxBackoff < 0 || c.CallTimeout < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	return c, errors.Join(errs...)
}

// Stats are the publisher's counters since New.
type Stats struct {
	Published uint64 // entries EventBridge accepted
	Dropped   uint64 // entries Publish refused: queue full, invalid or oversized, or closed
	Failed    uint64 // accepted entries given up on after MaxAttempts (or at Close)
	Retried   uint64 // resends of entries that had failed
	Queued    int    // entries waiting now
}

// Publisher sends entries to EventBridge from a bounded queue. Create it with New, run it with
// Start, stop it with Close.
type Publisher struct {
	api API
	cfg Config
	log *slog.Logger

	queue chan Entry

	mu     sync.RWMutex // held for reading while enqueuing; Close takes it to stop enqueues
	closed bool

	startOnce sync.Once
	stop      chan struct{} // closed by Close: drain the queue, then return
	stopOnce  sync.Once
	done      chan struct{} // closed when the worker has returned
	cancel    context.CancelFunc

	published, dropped, failed, retried atomic.Uint64
	lastDropLog                         atomic.Int64 // unix nanos of the last "dropping" warning
	unsent                              atomic.Int64 // queued entries abandoned when the loop stopped
}

// New returns a publisher sending to api. logger may be nil.
func New(api API, cfg Config, logger *slog.Logger) (*Publisher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("eventbridge publisher config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Publisher{
		api:   api,
		cfg:   cfg,
		log:   logger.With("component", "eventbridge"),
		queue: make(chan Entry, cfg.QueueSize),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}, nil
}

// Start runs the sending loop until Close, or until ctx is cancelled (which abandons what is
// queued). Calls after the first do nothing.
func (p *Publisher) Start(ctx context.Context) {
	p.startOnce.Do(func() {
		ctx, p.cancel = context.WithCancel(ctx)
		go p.run(ctx)
	})
}

// Publish queues e and reports whether it was accepted. It never blocks: when the queue is
// full, e is invalid or larger than a request may be, or the publisher is closed, e is dropped
// and counted. Publish is safe for concurrent use.
func (p *Publisher) Publish(e Entry) bool {
	if err := e.check(p.cfg.MaxRequestBytes); err != nil {
		p.dropped.Add(1)
		p.log.Warn("event dropped: invalid entry", "source", e.Source, "detail_type", e.DetailType, "error", err)
		return false
	}
	e.Resources = slices.Clone(e.Resources) // the caller may reuse its slice
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		p.dropped.Add(1)
		p.log.Debug("event dropped: publisher closed", "source", e.Source, "detail_type", e.DetailType)
		return false
	}
	select {
	case p.queue <- e:
		return true
	default:
		n := p.dropped.Add(1)
		p.warnDropping(n)
		return false
	}
}

// warnDropping logs queue overflow at most every 10 seconds, with the running total.
func (p *Publisher) warnDropping(total uint64) {
	now := time.Now().UnixNano()
	last := p.lastDropLog.Load()
	if now-last < int64(10*time.Second) || !p.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn("event queue full, dropping events", "queue_size", p.cfg.QueueSize, "dropped_total", total)
}

// Close stops accepting entries and waits until the queued ones are sent (or given up on).
// If ctx ends first, sending is abandoned, the rest counted as failed, and ctx's error
// returned; likewise an error if Start's context had already stopped the loop with entries
// queued. Close starts the loop if Start was never called, so entries are not lost silently.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.stopOnce.Do(func() { close(p.stop) })
	p.Start(context.WithoutCancel(ctx))
	select {
	case <-p.done:
		if n := p.unsent.Load(); n > 0 {
			return fmt.Errorf("close eventbridge publisher: %d events not sent: loop already stopped", n)
		}
		return nil
	case <-ctx.Done():
		p.cancel()
		<-p.done
		return fmt.Errorf("close eventbridge publisher: %w", ctx.Err())
	}
}

// Stats returns the counters.
func (p *Publisher) Stats() Stats {
	return Stats{
		Published: p.published.Load(),
		Dropped:   p.dropped.Load(),
		Failed:    p.failed.Load(),
		Retried:   p.retried.Load(),
		Queued:    len(p.queue),
	}
}

func (p *Publisher) run(ctx context.Context) {
	defer close(p.done)
	var carry *Entry // taken from the queue but did not fit in the last batch
	for {
		batch, more := p.collect(ctx, &carry)
		if len(batch) > 0 {
			p.send(ctx, batch)
		}
		if !more || ctx.Err() != nil {
			break
		}
	}
	// Stopped (closed and drained, or cancelled): nothing may be enqueued any more, and what is
	// left will not be sent.
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	lost := len(p.queue)
	for len(p.queue) > 0 {
		<-p.queue
	}
	if carry != nil {
		lost++
	}
	if lost > 0 {
		p.unsent.Store(int64(lost))
		p.failed.Add(uint64(lost))
		p.log.Error("events not sent: publisher stopped", "events", lost)
	}
}

// collect returns the next batch: it waits for a first entry, then for more until the batch is
// full, the next entry would exceed the request size (it is carried over), or FlushInterval has
// passed. Once the publisher is closed it stops waiting and takes only what is queued. more is
// false when there is nothing left to do: closed and drained, or ctx done.
func (p *Publisher) collect(ctx context.Context, carry **Entry) (batch []Entry, more bool) {
	size := 0
	add := func(e Entry) {
		if len(batch) > 0 && size+e.Size() > p.cfg.MaxRequestBytes {
			*carry = &e
			return
		}
		batch = append(batch, e)
		size += e.Size()
	}
	if *carry != nil {
		e := **carry
		*carry = nil
		add(e)
	}
	stopping := false
	if len(batch) == 0 {
		select {
		case e := <-p.queue:
			add(e)
		case <-p.stop:
			stopping = true
		case <-ctx.Done():
			return nil, false
		}
	}
	var flush <-chan time.Time
fill:
	for len(batch) < p.cfg.BatchMax && *carry == nil {
		if stopping {
			select {
			case e := <-p.queue:
				add(e)
				continue
			default:
				break fill // drained
			}
		}
		if flush == nil {
			t := time.NewTimer(p.cfg.FlushInterval)
			defer t.Stop()
			flush = t.C
		}
		select {
		case e := <-p.queue:
			add(e)
		case <-p.stop:
			stopping = true
		case <-flush:
			break fill
		case <-ctx.Done():
			break fill
		}
	}
	return batch, len(batch) > 0 || *carry != nil || !stopping
}

// send delivers batch, resending failed entries until they succeed, fail permanently or run
// out of attempts.
func (p *Publisher) send(ctx context.Context, batch []Entry) {
	pending := make([]failedEntry, len(batch))
	for i, e := range batch {
		pending[i] = failedEntry{Entry: e}
	}
	for attempt := 1; ; attempt++ {
		retry, permanent, cause := p.putEvents(ctx, pending)
		p.published.Add(uint64(len(pending) - len(retry) - len(permanent)))
		if len(permanent) > 0 {
			p.giveUp(permanent, attempt, "permanent error")
		}
		if len(retry) == 0 {
			return
		}
		if attempt >= p.cfg.MaxAttempts || ctx.Err() != nil {
			p.giveUp(retry, attempt, cause)
			return
		}
		p.log.Debug("resending failed events", "events", len(retry), "attempt", attempt+1, "cause", cause)
		if !backoff.Sleep(ctx, p.backoff(attempt)) {
			p.giveUp(retry, attempt, "publisher stopped")
			return
		}
		p.retried.Add(uint64(len(retry)))
		pending = retry
	}
}

type failedEntry struct {
	Entry
	code, message string
}

func (p *Publisher) giveUp(entries []failedEntry, attempts int, cause string) {
	p.failed.Add(uint64(len(entries)))
	for _, e := range entries {
		p.log.Error("event not delivered to eventbridge", "source", e.Source, "detail_type", e.DetailType,
			"attempts", attempts, "error_code", e.code, "error", e.message, "cause", cause)
	}
}

// putEvents makes one PutEvents call. It returns the entries to send again, the entries
// EventBridge refused for good, and a short description of what went wrong.
func (p *Publisher) putEvents(ctx context.Context, entries []failedEntry) (retry, permanent []failedEntry, cause string) {
	in := &awseventbridge.PutEventsInput{Entries: make([]types.PutEventsRequestEntry, len(entries))}
	for i, e := range entries {
		re := types.PutEventsRequestEntry{
			EventBusName: aws.String(p.cfg.BusName),
			Source:       aws.String(e.Source),
			DetailType:   aws.String(e.DetailType),
			Detail:       aws.String(e.Detail),
			Resources:    e.Resources,
		}
		if !e.Time.IsZero() {
			re.Time = aws.Time(e.Time)
		}
		in.Entries[i] = re
	}
	callCtx, cancel := context.WithTimeout(ctx, p.cfg.CallTimeout)
	defer cancel()
	out, err := p.api.PutEvents(callCtx, in)
	if err != nil {
		// The whole request failed (network, 5xx, throttling of the call): all entries again.
		retry = make([]failedEntry, len(entries))
		for i, e := range entries {
			retry[i] = failedEntry{Entry: e.Entry, code: "RequestFailed", message: err.Error()}
		}
		return retry, nil, "put events: " + err.Error()
	}
	// Entries[i] answers request entry i. A missing answer counts as a failure to retry.
	var codes []string
	for i, e := range entries {
		var code, msg string
		if i < len(out.Entries) {
			r := out.Entries[i]
			code, msg = aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage)
			if code == "" && aws.ToString(r.EventId) != "" {
				continue
			}
		}
		if code == "" {
			code, msg = "MissingResult", "no event id and no error code for this entry"
		}
		f := failedEntry{Entry: e.Entry, code: code, message: msg}
		if isPermanent(code) {
			permanent = append(permanent, f)
		} else {
			retry = append(retry, f)
		}
		if !slices.Contains(codes, code) {
			codes = append(codes, code)
		}
	}
	return retry, permanent, "entries failed: " + strings.Join(codes, ",")
}

// isPermanent reports whether a per-entry error code is one the API reference lists as not
// retryable: sending such an entry again cannot succeed. Unknown codes are retried.
func isPermanent(code string) bool {
	switch code {
	case "AccessDeniedException", "InvalidAccountIdException", "InvalidArgument", "MalformedDetail",
		"RedactionFailure", "NotAuthorizedForSourceException", "NotAuthorizedForDetailTypeException":
		return true
	}
	return false
}

// backoff is the wait after the attempt-th failure (package backoff).
func (p *Publisher) backoff(attempt int) time.Duration {
	return backoff.Delay(p.cfg.Backoff, p.cfg.MaxBackoff, attempt)
}
