package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// LocalSink stands in for SNS on one machine: every notification is a log line, a JSON line
// appended to an outbox file (an OutboxEntry: exactly what SNS would be sent, and what each
// protocol's subscribers would receive), and optionally an HTTP POST of that line to a webhook.
type LocalSink struct {
	log     *slog.Logger
	outbox  string
	webhook string
	client  *http.Client

	mu sync.Mutex // serialises appends so lines never interleave
}

// LocalConfig configures a LocalSink.
type LocalConfig struct {
	Outbox  string // file the JSON lines are appended to (created with its folder)
	Webhook string // optional URL receiving a POST per notification
	Timeout time.Duration
}

// NewLocalSink returns a sink; the outbox folder is created now so a bad path fails at start.
func NewLocalSink(cfg LocalConfig, logger *slog.Logger) (*LocalSink, error) {
	if cfg.Outbox == "" {
		return nil, fmt.Errorf("notify: local sink needs an outbox file")
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Outbox), 0o755); err != nil {
		return nil, fmt.Errorf("notify: outbox folder: %w", err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &LocalSink{log: logger, outbox: cfg.Outbox, webhook: cfg.Webhook, client: &http.Client{Timeout: cfg.Timeout}}, nil
}

var _ IDPublisher = (*LocalSink)(nil)

// OutboxEntry is one line of the outbox.
type OutboxEntry struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Dataset string    `json:"dataset"`
	// MessageID stands for SNS's MessageId: a random UUID per delivery, as SNS gives one.
	MessageID string `json:"message_id"`
	Wire
	// Deliveries is what a subscriber of each protocol receives as its message; the e-mail's
	// subject is Subject.
	Deliveries map[string]string `json:"deliveries"`
}

// Publish writes n to the outbox (fsync'd) and posts it to the webhook. A webhook failure is
// returned so the caller retries; the outbox line may then appear twice (at-least-once, as SNS).
func (s *LocalSink) Publish(ctx context.Context, n Notification) error {
	_, err := s.PublishID(ctx, n)
	return err
}

// PublishID is Publish returning the outbox line's message id.
func (s *LocalSink) PublishID(ctx context.Context, n Notification) (string, error) {
	w, err := n.Wire()
	if err != nil {
		return "", err
	}
	if n.Time.IsZero() {
		n.Time = time.Now().UTC()
	}
	mid := newMessageID()
	line, err := json.Marshal(OutboxEntry{ID: n.ID, Time: n.Time, Dataset: n.Dataset, MessageID: mid, Wire: w, Deliveries: w.Deliveries()})
	if err != nil {
		return "", fmt.Errorf("notify: encode: %w", err)
	}
	if err := s.append(line); err != nil {
		return "", err
	}
	s.log.InfoContext(ctx, "notification", "dataset", n.Dataset, "subject", w.Subject, "id", n.ID, "messageId", mid, "transfer_ids", n.TransferIDs)
	if s.webhook == "" {
		return mid, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.webhook, bytes.NewReader(line))
	if err != nil {
		return "", fmt.Errorf("notify: webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("notify: webhook: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("notify: webhook answered %s", resp.Status)
	}
	return mid, nil
}

// newMessageID returns a random UUID, the form of SNS's message ids.
func newMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics instead)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (s *LocalSink) append(line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(s.outbox, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("notify: outbox: %w", err)
	}
	_, werr := f.Write(append(line, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := firstErr(werr, serr, cerr); err != nil {
		return fmt.Errorf("notify: outbox %s: %w", s.outbox, err)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
