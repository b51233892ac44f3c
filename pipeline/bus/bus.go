// Package bus is the embedded default's in-process event bus: a stand-in for EventBridge's
// default bus with the behaviour Ferry relies on.
//
//   - Put appends events to an fsync'd, append-only JSON-lines log before returning (group
//     commit: concurrent Puts share one fsync). It never waits for targets.
//   - Rules hold EventBridge event patterns, evaluated with quamina, and by the bus itself for
//     anything-but a prefix or suffix, which quamina lacks; other operators neither evaluates
//     are refused at AddRule (see compilePattern).
//   - Each rule consumes the log independently from its own cursor (dir/cursors/<rule>.json),
//     delivering matched events to its Target on a bounded worker pool of its own (see
//     Config), retrying failures with exponential backoff and jitter, and after MaxAttempts
//     writing the event to dir/dead-letter/<rule>/<event-id>.json. The cursor advances past an
//     event only once it is delivered or dead-lettered, so after a restart, events not yet
//     handled are delivered again: at least once, never lost; duplicates are possible, as on AWS.
//   - Old segments are deleted once every rule's cursor has passed them, keeping the newest
//     Config.KeepSegments for `ferry events`.
//   - Other processes put events through the inbox folder (Enqueue): `ferry redrive` sends
//     dead letters back this way while `ferry serve` holds the bus.
//
// A rule added for the first time starts at the end of the log (like a new EventBridge rule,
// it sees only new events). Removing a rule from the configuration leaves its cursor file,
// which holds back compaction until the file is deleted.
package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/ferrygw/ferry/pipeline/event"
)

// ErrClosed is returned by Put and AddRule after Close.
var ErrClosed = errors.New("event bus closed")

// Config tunes the bus; zero values take the defaults shown.
//
// Each rule delivers on Workers goroutines of its own, so rules never wait for one another: a
// rule whose target is slow or failing (a webhook down, a backlog of arrivals to transform)
// holds its own workers only, and a later stage (notify) delivers as soon as its event is
// logged instead of queueing behind an earlier stage's backlog. Workers bounds the deliveries
// a rule runs at once; MaxInFlight bounds the events it holds, running and waiting (for a
// worker or a retry), which is what holds its cursor back.
//
// Why this cannot deadlock: a worker blocks only in its target's Deliver. A target may Put
// (the transform handler publishes its result), and Put waits only for the log writer's fsync,
// which never waits for a delivery. A rule's feeder blocks only while its window is full or its
// workers are all busy, and both end when a worker finishes, which depends on nothing the
// feeder holds; a retry waits for a worker of its own rule the same way. Close cancels the
// workers' context, which ends every wait above. Nothing that must stay in order changes with
// the number of workers: the log's sequence and each cursor (advanced only past a contiguous
// run of handled events) do not depend on it, and deliveries of one rule were never ordered
// (nor are they on EventBridge; the handlers are order-independent by design).
type Config struct {
	Workers            int           // concurrent deliveries of each rule; 16 (see Config)
	MaxInFlight        int           // undelivered events a rule holds at once before it stops reading; 256
	DeliveryTimeout    time.Duration // per Deliver call; 30s
	SegmentBytes       int64         // rotate the log past this size; 8 MiB
	KeepSegments       int           // newest segments never compacted (history for `ferry events`); 4
	CheckpointInterval time.Duration // how often cursors are saved and the log compacted; 250ms
	InboxInterval      time.Duration // how often the inbox (see Enqueue) is read; 1s
}

func (c Config) withDefaults() Config {
	if c.Workers <= 0 {
		c.Workers = 16
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 256
	}
	if c.DeliveryTimeout <= 0 {
		c.DeliveryTimeout = 30 * time.Second
	}
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = 8 << 20
	}
	if c.KeepSegments <= 0 {
		c.KeepSegments = 4
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = 250 * time.Millisecond
	}
	if c.InboxInterval <= 0 {
		c.InboxInterval = time.Second
	}
	return c
}

// RetryPolicy bounds a rule's delivery attempts. Zero values take the defaults shown.
type RetryPolicy struct {
	MaxAttempts int           // total attempts before dead-lettering; 10
	MinBackoff  time.Duration // delay after the first failure; 1s
	MaxBackoff  time.Duration // cap on the delay; 5m
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 10
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = time.Second
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 5 * time.Minute
	}
	if p.MaxBackoff < p.MinBackoff {
		p.MaxBackoff = p.MinBackoff
	}
	return p
}

// Rule routes events matching Pattern (an EventBridge event pattern) to Target.
type Rule struct {
	Name    string // [A-Za-z0-9._-]{1,64}, as EventBridge; names the cursor and dead-letter files
	Pattern string
	Target  Target
	Retry   RetryPolicy
}

var ruleName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Bus is the event log plus its rules. Its methods are safe for concurrent use.
type Bus struct {
	dir  string
	cfg  Config
	log  *slog.Logger
	w    *logWriter
	lock *os.File // flock on dir/LOCK

	mu     sync.Mutex
	last   uint64        // last durable seq
	notify chan struct{} // closed and replaced whenever last grows
	rules  map[string]*rule
	closed bool

	ctx       context.Context // deliveries; cancelled when Close gives up draining
	cancel    context.CancelFunc
	drainFeed chan struct{} // closed by Close: feeders stop at the end of the log
	stopFeed  chan struct{} // closed when Close gives up: feeders stop now
	feeders   sync.WaitGroup
	workers   sync.WaitGroup
	inflight  sync.WaitGroup
	ckptDone  chan struct{}
	ckptStop  chan struct{}
	inboxStop chan struct{}
	inboxDone chan struct{}
}

// Open opens (creating if needed) the bus in dir and recovers its log. Rules are added with
// AddRule; each resumes from its saved cursor.
func Open(dir string, cfg Config, logger *slog.Logger) (*Bus, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	for _, d := range []string{dir, filepath.Join(dir, "cursors"), filepath.Join(dir, "dead-letter"), filepath.Join(dir, "inbox")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open event bus: %w", err)
		}
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	b := &Bus{
		dir: dir, cfg: cfg, log: logger.With("component", "bus"), lock: lock,
		notify: make(chan struct{}), rules: map[string]*rule{},
		stopFeed: make(chan struct{}), drainFeed: make(chan struct{}),
		ckptDone: make(chan struct{}), ckptStop: make(chan struct{}), inboxStop: make(chan struct{}), inboxDone: make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	w, last, err := openLog(dir, cfg.SegmentBytes, b.committed)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open event bus: %w", err)
	}
	b.w, b.last = w, last
	go b.checkpointLoop()
	go b.inboxLoop()
	b.log.Debug("event bus open", "dir", dir, "last_seq", last)
	return b, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock event bus dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock event bus dir %s (is another ferry using it?): %w", dir, err)
	}
	return f, nil
}

func (b *Bus) committed(last uint64) {
	b.mu.Lock()
	b.last = last
	close(b.notify)
	b.notify = make(chan struct{})
	b.mu.Unlock()
}

func (b *Bus) committedState() (uint64, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last, b.notify
}

// Put logs events durably and returns once they are fsync'd; delivery happens afterwards.
// An event without an id gets a new one, without a time gets now. If ctx ends first, Put
// returns its error, but the events may still be logged (and delivered).
func (b *Bus) Put(ctx context.Context, events ...event.Envelope) error {
	lines := make([][]byte, 0, len(events))
	for _, e := range events {
		line, err := encodeEnvelope(e)
		if err != nil {
			return err
		}
		lines = append(lines, line)
	}
	return b.putLines(ctx, lines)
}

// PutRaw is Put for events already encoded as JSON. Each must be an EventBridge event with a
// source and a detail-type.
func (b *Bus) PutRaw(ctx context.Context, events ...[]byte) error {
	lines := make([][]byte, 0, len(events))
	for _, raw := range events {
		env, err := event.DecodeEnvelope(raw)
		if err != nil {
			return fmt.Errorf("put event: %w", err)
		}
		if env.ID == "" || env.Time.IsZero() {
			line, err := encodeEnvelope(env)
			if err != nil {
				return err
			}
			lines = append(lines, line)
			continue
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return fmt.Errorf("put event: %w", err)
		}
		lines = append(lines, buf.Bytes())
	}
	return b.putLines(ctx, lines)
}

func encodeEnvelope(e event.Envelope) ([]byte, error) {
	if e.Source == "" || e.DetailType == "" {
		return nil, fmt.Errorf("put event: missing source or detail-type")
	}
	if e.ID == "" {
		e.ID = event.NewID()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC().Truncate(time.Second)
	}
	if e.Version == "" {
		e.Version = event.EnvelopeVersion
	}
	if e.Resources == nil {
		e.Resources = []string{}
	}
	if len(e.Detail) == 0 {
		e.Detail = json.RawMessage("{}")
	}
	line, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("put event %s: %w", e.ID, err)
	}
	return line, nil
}

func (b *Bus) putLines(ctx context.Context, lines [][]byte) error {
	if len(lines) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put event: %w", err)
	}
	bt, err := b.w.append(lines)
	if err != nil {
		return fmt.Errorf("put event: %w", err)
	}
	select {
	case <-bt.done:
		if bt.err != nil {
			return fmt.Errorf("put event: %w", bt.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("put event: %w", ctx.Err())
	}
}

// AddRule starts routing events to r.Target. A rule seen before (same name, in this dir)
// resumes after the last event it handled; a new one starts with the next event put.
func (b *Bus) AddRule(r Rule) error {
	if !ruleName.MatchString(r.Name) {
		return fmt.Errorf("add rule %q: name must match %s", r.Name, ruleName)
	}
	if r.Target == nil {
		return fmt.Errorf("add rule %s: no target", r.Name)
	}
	m, _, err := compilePattern(r.Pattern)
	if err != nil {
		return fmt.Errorf("add rule %s: %w", r.Name, err)
	}
	r.Retry = r.Retry.withDefaults()

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("add rule %s: %w", r.Name, ErrClosed)
	}
	if _, dup := b.rules[r.Name]; dup {
		return fmt.Errorf("add rule %s: a rule with this name exists", r.Name)
	}
	ru := &rule{Rule: r, m: m, bus: b, path: filepath.Join(b.dir, "cursors", r.Name+".json"), wake: make(chan struct{}, 1),
		jobs: make(chan *job, b.cfg.Workers)}
	cursor, ok, err := readCursor(ru.path)
	if err != nil {
		return fmt.Errorf("add rule %s: %w", r.Name, err)
	}
	if !ok {
		cursor = b.last
		if err := writeCursor(ru.path, r.Name, cursor); err != nil {
			return fmt.Errorf("add rule %s: %w", r.Name, err)
		}
	} else if cursor > b.last {
		b.log.Warn("rule cursor is past the end of the log; restarting at the end", "rule", r.Name, "cursor", cursor, "last_seq", b.last)
		cursor = b.last
	}
	ru.read, ru.saved = cursor, cursor
	b.rules[r.Name] = ru
	for range b.cfg.Workers {
		b.workers.Add(1)
		go ru.work()
	}
	b.feeders.Add(1)
	go ru.feed(cursor + 1)
	b.log.Info("rule added", "rule", r.Name, "pattern", r.Pattern, "from_seq", cursor+1)
	return nil
}

// Close stops taking events, lets the rules deliver every logged event (including pending
// retries) until ctx ends, then abandons the rest, which are redelivered after the next Open. Cursors
// are saved either way. It returns ctx's error if deliveries were abandoned.
func (b *Bus) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.closed = true
	b.mu.Unlock()

	close(b.inboxStop)
	<-b.inboxDone // no inbox event is put after this
	b.w.close()
	close(b.drainFeed)
	drained := make(chan struct{})
	go func() { b.feeders.Wait(); b.inflight.Wait(); close(drained) }()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = fmt.Errorf("close event bus: deliveries abandoned, redelivered after restart: %w", ctx.Err())
	}
	close(b.stopFeed)
	b.cancel()
	b.feeders.Wait()
	b.workers.Wait()
	close(b.ckptStop)
	<-b.ckptDone
	b.checkpoint()
	b.lock.Close()
	return err
}
