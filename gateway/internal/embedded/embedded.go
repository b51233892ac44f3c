package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/embedded/s3server"
	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/bus"
	"github.com/ferrygw/ferry/pipeline/handler"
	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/notify"
	"github.com/ferrygw/ferry/pipeline/route"
)

// System is the no-AWS default: an S3 endpoint on a local directory whose every change is
// written to the local event bus (before the S3 response returns), rules that route those
// events to the pipeline's handlers (the Lambdas' code, as bus targets), and a local
// notification sink (an outbox file, an optional webhook). Start builds all of it from the
// embedded section of the config; the caller serves S3 and closes it.
type System struct {
	s3      *s3server.Server
	bus     *bus.Bus  // nil when embedded.events.dir is empty
	keys    *userKeys // users' S3 keys, in force once the users are loaded
	metrics *pipelineMetrics
	ledger  *ledger.Ledger // the pipeline's, nil when no pipeline runs
}

// S3 is the endpoint's HTTP server, for the caller to serve on embedded.s3.listen.
func (e *System) S3() *s3server.Server { return e.s3 }

// Bus is the local event bus, nil when embedded.events.dir is empty: the gateway's own events
// go there.
func (e *System) Bus() *bus.Bus { return e.bus }

// Metrics collects the pipeline's and the bus's figures.
func (e *System) Metrics() prometheus.Collector { return e.metrics }

// UseUsers puts users' own S3 keys in force once the users file is loaded (it may be an object
// of this endpoint, so it is read after the endpoint serves).
func (e *System) UseUsers(store *users.Store, logger *slog.Logger) { e.keys.start(store, logger) }

// Rule patterns of the embedded default (EventBridge syntax). Arrivals exclude keys under
// .ferry/ (the pipeline's ledger), as the deployed transform rule does; their writes are not
// put on the bus here anyway (isLedgerRecord), so this only keeps the two rules the same.
const (
	patternAll      = `{"source": ["aws.s3", "ferry.gateway", "ferry.pipeline"]}`
	patternArrivals = `{"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": {"object": {"key": [{"anything-but": {"prefix": ".ferry/"}}]}}}`
	patternPipeline = `{"source": ["ferry.pipeline"]}`
)

// Start opens the event log, adds the rules and the pipeline's targets, and builds the S3
// endpoint on its directory; nothing listens yet.
func Start(cfg *config.Config, logger *slog.Logger) (*System, error) {
	e := &System{metrics: newPipelineMetrics()}
	ec := cfg.Embedded
	if ec.Events.Dir != "" {
		b, err := bus.Open(ec.Events.Dir, bus.Config{}, logger)
		if err != nil {
			return nil, fmt.Errorf("event bus: %w", err)
		}
		e.bus = b
		e.metrics.bus = b
		if err := e.addRules(cfg, logger); err != nil {
			e.closeOnError(logger)
			return nil, err
		}
	}
	var onChange func(context.Context, s3server.Change) error
	if e.bus != nil {
		region := cfg.Storage.S3.Region
		onChange = func(ctx context.Context, c s3server.Change) error {
			if e.isLedgerRecord(c) {
				return nil
			}
			ev, err := FromChange(c, region)
			if err != nil {
				return err
			}
			raw, err := json.Marshal(ev)
			if err != nil {
				return fmt.Errorf("encode s3 event: %w", err)
			}
			// Durable before the client hears success: an event is never lost to a crash.
			return e.bus.PutRaw(ctx, raw)
		}
	}
	keys, err := newUserKeys(cfg)
	if err != nil {
		e.closeOnError(logger)
		return nil, err
	}
	e.keys = keys
	srv, err := s3server.New(s3server.Config{
		DataDir: ec.S3.DataDir, AccessKey: ec.S3.AccessKey, Secret: ec.S3.Secret, Keys: keys,
		Region: cfg.Storage.S3.Region, Buckets: append([]string{cfg.Storage.S3.Bucket}, ec.S3.Buckets...),
		OnChange:                    onChange,
		AbortIncompleteUploadsAfter: ec.S3.AbortIncompleteUploadsAfter,
	}, logger.With("component", "embedded-s3"))
	if err != nil {
		e.closeOnError(logger)
		return nil, err
	}
	e.s3 = srv
	return e, nil
}

func (e *System) addRules(cfg *config.Config, logger *slog.Logger) error {
	if err := e.bus.AddRule(bus.Rule{Name: "log", Pattern: patternAll,
		Target: bus.LogTarget{Logger: logger, Rule: "log"}}); err != nil {
		return err
	}
	n := cfg.Embedded.Notifications
	if n.Outbox == "" {
		return nil
	}
	local, err := notify.NewLocalSink(notify.LocalConfig{Outbox: n.Outbox, Webhook: n.Webhook}, logger.With("component", "notify"))
	if err != nil {
		return err
	}
	sink := e.metrics.publisher(local)
	if cfg.Embedded.Pipeline.Routes == "" {
		// No routes: announce every arrival, so the bus is useful before any pipeline exists.
		return e.bus.AddRule(bus.Rule{Name: "arrivals", Pattern: patternArrivals,
			Target: notify.Arrivals{Publisher: sink, Dataset: "arrivals"}})
	}
	return e.addPipeline(cfg, sink, logger)
}

// addPipeline runs the Lambdas' handlers as bus targets: S3's Object Created -> transform ->
// File Processed/Rejected on the bus -> notify -> the local sink. They reach the embedded
// endpoint over HTTP with the same S3 client code as on AWS.
func (e *System) addPipeline(cfg *config.Config, sink notify.Publisher, logger *slog.Logger) error {
	routes, err := route.Load(cfg.Embedded.Pipeline.Routes)
	if err != nil {
		return err
	}
	s3c := cfg.Embedded.S3
	client, err := s3store.NewClient(context.Background(), s3store.ClientConfig{
		Endpoint: "http://" + s3c.Listen, Region: cfg.Storage.S3.Region, PathStyle: true,
		AccessKey: s3c.AccessKey, Secret: s3c.Secret,
	})
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	led := ledger.New(client, cfg.Storage.S3.Bucket, "")
	e.ledger = led
	log := logger.With("component", "pipeline")
	th, err := handler.NewTransform(handler.TransformConfig{
		S3: client, Routes: routes, Ledger: led, Events: e.bus, Log: log, Metrics: e.metrics,
		Account: LocalAccount, Region: cfg.Storage.S3.Region,
	})
	if err != nil {
		return err
	}
	nh, err := handler.NewNotify(handler.NotifyConfig{
		Publisher: sink, Ledger: led, Log: log, Datasets: routes.Datasets,
		Presigner: s3.NewPresignClient(client), Credentials: credentials.NewStaticCredentialsProvider(s3c.AccessKey, s3c.Secret, ""),
	})
	if err != nil {
		return err
	}
	// Quick retries locally: a transient failure here is usually the endpoint starting up.
	retry := bus.RetryPolicy{MaxAttempts: 8, MinBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second}
	pattern, ok := transformPattern(routes)
	if !ok {
		logger.Warn("a route matches every key: the transform rule takes every new object and the handler drops the pipeline's own (.ferry/)")
	}
	if err := e.bus.AddRule(bus.Rule{Name: "transform", Pattern: pattern, Target: th, Retry: retry}); err != nil {
		return err
	}
	return e.bus.AddRule(bus.Rule{Name: "notify", Pattern: patternPipeline, Target: nh, Retry: retry})
}

// transformPattern is the transform rule's pattern: like the deployed rule (infra/pipeline.yaml),
// only new objects under the routes' prefixes, so the pipeline's own writes — the ledger and
// status records under .ferry/, outputs elsewhere — never reach it. When a route has no prefix
// (it takes any key) it is every new object outside .ferry/, and ok is false.
func transformPattern(routes *route.Config) (pattern string, ok bool) {
	var prefixes []string
	for _, r := range routes.Routes {
		if r.Match.Prefix == "" {
			return patternArrivals, false
		}
		if !slices.Contains(prefixes, r.Match.Prefix) {
			prefixes = append(prefixes, r.Match.Prefix)
		}
	}
	if len(prefixes) == 0 {
		return patternArrivals, false
	}
	slices.Sort(prefixes)
	keys := make([]map[string]string, len(prefixes))
	for i, p := range prefixes {
		keys[i] = map[string]string{"prefix": p}
	}
	b, err := json.Marshal(map[string]any{
		"source": []string{"aws.s3"}, "detail-type": []string{"Object Created"},
		"detail": map[string]any{"object": map[string]any{"key": keys}},
	})
	if err != nil {
		return patternArrivals, false
	}
	return string(b), true
}

// isLedgerRecord reports whether c is a write of the pipeline's ledger. Those are its own
// bookkeeping, not arrivals: on AWS the transform rule excludes them; here they are not put on
// the bus at all. Each processed file writes seven (claims, content identities, done marks),
// and each would otherwise be logged and fsync'd before the write returns, then read, matched
// and decoded by every rule only to be ignored.
func (e *System) isLedgerRecord(c s3server.Change) bool {
	return e.ledger != nil && c.Bucket == e.ledger.Bucket() && strings.HasPrefix(c.Key, e.ledger.Prefix())
}

// closeOnError closes what Start opened before it failed.
func (e *System) closeOnError(logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Close(ctx, logger)
}

// Close delivers what the bus can before ctx ends; the rest is redelivered at next start.
func (e *System) Close(ctx context.Context, logger *slog.Logger) {
	if e.bus == nil {
		return
	}
	if err := e.bus.Close(ctx); err != nil {
		logger.Warn("event bus closed with undelivered events; they are redelivered at next start", "err", err)
	}
}
