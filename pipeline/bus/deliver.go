package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ferrygw/ferry/pipeline/backoff"
	"github.com/ferrygw/ferry/pipeline/event"
)

// rule is a Rule with its matcher and its delivery state: the events read from the log and not
// yet delivered or dead-lettered (window, in seq order) and the cursor derived from it.
type rule struct {
	Rule
	m    *matcher
	bus  *Bus
	path string        // cursor file
	wake chan struct{} // an event left the window
	jobs chan *job     // to this rule's workers

	mu     sync.Mutex
	window []*job // in seq order; head removed as soon as it is done
	read   uint64 // last seq the feeder has looked at
	saved  uint64 // cursor last written to path
}

type job struct {
	rule     *rule
	seq      uint64
	event    []byte
	attempts int
	first    time.Time
	lastErr  error
	done     bool
}

// cursor is the highest seq such that every event up to it is handled for this rule.
func (r *rule) cursor() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.window) == 0 {
		return r.read
	}
	return r.window[0].seq - 1
}

func (r *rule) windowLen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.window)
}

func (r *rule) skip(seq uint64) {
	r.mu.Lock()
	r.read = seq
	r.mu.Unlock()
}

func (r *rule) track(j *job) {
	r.mu.Lock()
	r.window = append(r.window, j)
	r.read = j.seq
	r.mu.Unlock()
}

func (r *rule) ack(j *job) {
	r.mu.Lock()
	j.done = true
	n := 0
	for n < len(r.window) && r.window[n].done {
		n++
	}
	if n > 0 {
		r.window = append(r.window[:0], r.window[n:]...)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// feed reads the log from seq from, matching each durable event against the rule and handing
// matches to the workers, until the bus closes. The window bounds how far it runs ahead.
func (r *rule) feed(from uint64) {
	b := r.bus
	defer b.feeders.Done()
	lr := NewLogReader(b.dir, from)
	defer lr.Close()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-b.stopFeed:
			return
		default:
		}
		if r.windowLen() >= b.cfg.MaxInFlight {
			select {
			case <-r.wake:
			case <-b.stopFeed:
				return
			}
			continue
		}
		last, notify := b.committedState()
		if lr.next > last {
			select {
			case <-notify:
			case <-b.drainFeed: // closing, and the log is fully read
				return
			case <-b.stopFeed:
				return
			}
			continue
		}
		seq, line, err := lr.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				b.log.Error("read event log", "rule", r.Name, "err", err)
			}
			retry.Reset(50 * time.Millisecond)
			select {
			case <-retry.C:
			case <-b.stopFeed:
				return
			}
			continue
		}
		matched, err := r.m.matches(line)
		if err != nil {
			b.log.Warn("event does not parse; not matched", "rule", r.Name, "seq", seq, "err", err)
		}
		if !matched {
			r.skip(seq)
			continue
		}
		j := &job{rule: r, seq: seq, event: line, first: time.Now()}
		r.track(j)
		b.inflight.Add(1)
		select {
		case r.jobs <- j:
		case <-b.stopFeed:
			b.inflight.Done() // stays in the window: the cursor stops before it
			return
		}
	}
}

// work delivers the rule's jobs until the bus's delivery context ends.
func (r *rule) work() {
	b := r.bus
	defer b.workers.Done()
	for {
		select {
		case j := <-r.jobs:
			b.deliver(j)
		case <-b.ctx.Done():
			return
		}
	}
}

func (b *Bus) deliver(j *job) {
	r := j.rule
	j.attempts++
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.DeliveryTimeout)
	err := safeDeliver(ctx, r.Target, j.event)
	cancel()
	if err == nil {
		r.ack(j)
		b.inflight.Done()
		return
	}
	if b.ctx.Err() != nil { // shutting down: not the target's fault, do not count it
		b.inflight.Done()
		return
	}
	j.lastErr = err
	if j.attempts >= r.Retry.MaxAttempts {
		if derr := b.deadLetter(j); derr != nil {
			b.log.Error("dead-letter failed; event stays undelivered until restart", "rule", r.Name, "seq", j.seq, "err", derr)
		} else {
			b.log.Warn("event dead-lettered", "rule", r.Name, "seq", j.seq, "attempts", j.attempts, "err", err)
			r.ack(j)
		}
		b.inflight.Done()
		return
	}
	d := backoffDelay(r.Retry, j.attempts)
	b.log.Debug("delivery failed; retrying", "rule", r.Name, "seq", j.seq, "attempt", j.attempts, "in", d, "err", err)
	time.AfterFunc(d, func() {
		select {
		case r.jobs <- j:
		case <-b.ctx.Done():
			b.inflight.Done()
		}
	})
}

func safeDeliver(ctx context.Context, t Target, ev []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("target panicked: %v", p)
		}
	}()
	return t.Deliver(ctx, ev)
}

func backoffDelay(p RetryPolicy, attempt int) time.Duration {
	return backoff.Delay(p.MinBackoff, p.MaxBackoff, attempt)
}

// DeadLetter is the content of a dead-letter file.
type DeadLetter struct {
	Rule         string          `json:"rule"`
	Pattern      string          `json:"pattern"`
	Seq          uint64          `json:"seq"`
	Attempts     int             `json:"attempts"`
	LastError    string          `json:"last_error"`
	FirstAttempt time.Time       `json:"first_attempt"`
	DeadAt       time.Time       `json:"dead_at"`
	Event        json.RawMessage `json:"event"`
}

func (b *Bus) deadLetter(j *job) error {
	r := j.rule
	dir := filepath.Join(b.dir, "dead-letter", r.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	id := fmt.Sprintf("seq-%d", j.seq)
	if env, err := event.DecodeEnvelope(j.event); err == nil && env.ID != "" {
		id = safeName(env.ID)
	}
	data, err := json.MarshalIndent(DeadLetter{
		Rule: r.Name, Pattern: r.Pattern, Seq: j.seq, Attempts: j.attempts, LastError: j.lastErr.Error(),
		FirstAttempt: j.first.UTC(), DeadAt: time.Now().UTC(), Event: j.event,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, id+".json"), append(data, '\n'))
}

// safeName keeps an event id usable as a file name.
func safeName(s string) string {
	return strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			return c
		}
		return '_'
	}, strings.TrimLeft(s, "."))
}

type cursorFile struct {
	Rule string `json:"rule"`
	Seq  uint64 `json:"seq"`
}

func readCursor(path string) (uint64, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read cursor: %w", err)
	}
	var c cursorFile
	if err := json.Unmarshal(data, &c); err != nil {
		return 0, false, fmt.Errorf("read cursor %s: %w", path, err)
	}
	return c.Seq, true, nil
}

func writeCursor(path, name string, seq uint64) error {
	data, _ := json.Marshal(cursorFile{Rule: name, Seq: seq})
	return writeFileAtomic(path, append(data, '\n'))
}

func (b *Bus) checkpointLoop() {
	defer close(b.ckptDone)
	t := time.NewTicker(b.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.checkpoint()
		case <-b.ckptStop:
			return
		}
	}
}

// checkpoint saves changed cursors, then deletes segments every cursor has passed, keeping the
// newest KeepSegments.
func (b *Bus) checkpoint() {
	b.mu.Lock()
	rules := make([]*rule, 0, len(b.rules))
	for _, r := range b.rules {
		rules = append(rules, r)
	}
	horizon := b.last
	b.mu.Unlock()

	active := map[string]bool{}
	for _, r := range rules {
		active[r.Name+".json"] = true
		c := r.cursor()
		r.mu.Lock()
		changed := c != r.saved
		r.mu.Unlock()
		if changed {
			if err := writeCursor(r.path, r.Name, c); err != nil {
				b.log.Error("save cursor", "rule", r.Name, "err", err)
				c = r.saved
			} else {
				r.mu.Lock()
				r.saved = c
				r.mu.Unlock()
			}
		}
		horizon = min(horizon, c)
	}
	ents, err := os.ReadDir(filepath.Join(b.dir, "cursors"))
	if err != nil {
		b.log.Error("list cursors", "err", err)
		return
	}
	for _, e := range ents {
		if active[e.Name()] || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		c, ok, err := readCursor(filepath.Join(b.dir, "cursors", e.Name()))
		if err != nil || !ok {
			continue
		}
		if c < horizon {
			horizon = c
		}
	}
	b.compact(horizon)
}

func (b *Bus) compact(horizon uint64) {
	bases, err := listSegments(b.dir)
	if err != nil {
		b.log.Error("compact event log", "err", err)
		return
	}
	for i := 0; i+b.cfg.KeepSegments < len(bases); i++ {
		lastSeq := bases[i+1] - 1
		if lastSeq > horizon {
			return
		}
		if err := os.Remove(filepath.Join(b.dir, segName(bases[i]))); err != nil {
			b.log.Error("compact event log", "err", err)
			return
		}
		b.log.Debug("compacted event log segment", "base", bases[i], "last_seq", lastSeq)
	}
}
