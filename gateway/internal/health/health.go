// Package health answers a load balancer's health checks on their own listener:
//
//   - GET /healthz is liveness: 200 while the process serves HTTP at all.
//   - GET /readyz is readiness: 200 only when S3 answered a recent probe, the users are loaded
//     and the gateway is not draining; otherwise 503 with the reasons, one per line, so that an
//     NLB stops sending new clients to a replica that could not store their files.
//
// The S3 probe runs in the background (Run) every Interval, every second while it fails; a
// check never waits on S3, so a health check answers at once however S3 is doing. The front ends
// ask S3Available before each new connection and refuse it with a temporary error while S3 is
// away, rather than let a partner log in to a gateway that cannot store the file.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Config's zero fields.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 3 * time.Second
)

// Config says what readiness depends on.
type Config struct {
	// ProbeS3 asks S3 something cheap about the bucket the gateway stores into (HeadBucket); nil
	// error means S3 answers. Required.
	ProbeS3 func(context.Context) error
	// Interval between probes (default DefaultInterval); Timeout bounds each (default
	// DefaultTimeout). A success counts for three intervals, so one slow answer does not flap
	// readiness, while a dead S3 is noticed within Interval+Timeout.
	Interval, Timeout time.Duration
	// Users reports why no users are loaded (nil: they are). Optional.
	Users func() error
	// Logger receives probe failures and recoveries; nil discards.
	Logger *slog.Logger
}

// Checker tracks readiness and serves the two endpoints.
type Checker struct {
	cfg      Config
	log      *slog.Logger
	draining atomic.Bool

	first     chan struct{} // closed after the first probe
	firstOnce sync.Once

	mu      sync.Mutex
	lastOK  time.Time // last successful probe
	lastErr error     // outcome of the last probe; nil after a success
	probed  bool
}

// New returns a Checker; call Run to start probing.
func New(cfg Config) (*Checker, error) {
	if cfg.ProbeS3 == nil {
		return nil, errors.New("health: Config.ProbeS3 is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Checker{cfg: cfg, log: log.With("component", "health"), first: make(chan struct{})}, nil
}

// RetryInterval is how often S3 is probed while it fails, so the gateway serves again within
// about a second of S3 coming back.
const RetryInterval = time.Second

// Run probes S3 at once and then every Interval (RetryInterval while it fails) until ctx ends.
func (c *Checker) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next := c.cfg.Interval
		if c.probe(ctx) != nil {
			next = min(next, RetryInterval)
		}
		t.Reset(next)
	}
}

func (c *Checker) probe(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	err := c.cfg.ProbeS3(pctx)
	cancel()
	if ctx.Err() != nil {
		return nil // shutting down: not an S3 failure
	}
	c.mu.Lock()
	was := c.lastErr
	first := !c.probed
	c.probed = true
	c.lastErr = err
	if err == nil {
		c.lastOK = time.Now()
	}
	c.mu.Unlock()
	c.firstOnce.Do(func() { close(c.first) })
	switch {
	case err != nil && (was == nil || first):
		c.log.Error("S3 probe failed: not ready", "err", err)
	case err == nil && was != nil:
		c.log.Info("S3 probe succeeded again: ready", "after", was.Error())
	}
	return err
}

// FirstProbe is closed once the first S3 probe has finished (at most Timeout after Run
// started): a gateway that waits for it before accepting clients knows whether S3 answers.
func (c *Checker) FirstProbe() <-chan struct{} { return c.first }

// ErrS3Unavailable is what S3Available returns (wrapped with the probe's error) while S3 does
// not answer: new logins are refused with a temporary error until it does.
var ErrS3Unavailable = errors.New("storage unavailable")

// S3Available reports whether S3 answered its last probe, recently. Before the first probe
// has finished it reports nil: a gateway starting up serves rather than refuse on a guess.
func (c *Checker) S3Available() error {
	c.mu.Lock()
	lastOK, lastErr, probed := c.lastOK, c.lastErr, c.probed
	c.mu.Unlock()
	switch {
	case !probed:
		return nil
	case lastErr != nil:
		return fmt.Errorf("%w: %w", ErrS3Unavailable, lastErr)
	case time.Since(lastOK) > 3*c.cfg.Interval:
		return fmt.Errorf("%w: no answer since %s", ErrS3Unavailable, lastOK.UTC().Format(time.RFC3339))
	}
	return nil
}

// SetDraining marks the gateway as stopping: readiness fails from now on, so the load balancer
// sends no new clients while transfers in progress finish.
func (c *Checker) SetDraining() { c.draining.Store(true) }

// Ready returns nil when the gateway is ready, else every reason it is not.
func (c *Checker) Ready() error {
	var reasons []error
	if c.draining.Load() {
		reasons = append(reasons, errors.New("draining: the gateway is shutting down"))
	}
	c.mu.Lock()
	lastOK, lastErr, probed := c.lastOK, c.lastErr, c.probed
	c.mu.Unlock()
	switch {
	case !probed:
		reasons = append(reasons, errors.New("s3: not probed yet"))
	case lastErr != nil:
		reasons = append(reasons, fmt.Errorf("s3: %w", lastErr))
	case time.Since(lastOK) > 3*c.cfg.Interval:
		reasons = append(reasons, fmt.Errorf("s3: no answer since %s", lastOK.UTC().Format(time.RFC3339)))
	}
	if c.cfg.Users != nil {
		if err := c.cfg.Users(); err != nil {
			reasons = append(reasons, fmt.Errorf("users not loaded: %w", err))
		}
	}
	return errors.Join(reasons...)
}

// Handler serves GET /healthz and GET /readyz, and nothing else.
func (c *Checker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := c.Ready(); err != nil {
			reply(w, http.StatusServiceUnavailable, "not ready\n"+err.Error())
			return
		}
		reply(w, http.StatusOK, "ready")
	})
	return mux
}

func reply(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(strings.TrimRight(body, "\n") + "\n"))
}
