// Package transferevents emits Ferry's own gateway events (source "ferry.gateway"): "Transfer
// Completed" and "Transfer Failed" for every upload, "Login Failed" for every refused login,
// "Client Banned" for every address the defender bans.
// S3's own events cannot say which FTP/SFTP user uploaded an object; these can.
//
// Like transfermetrics it decorates a user's storage view, so every protocol gets the same
// events without instrumenting each front end. Each upload yields exactly one event: Completed
// only after Close committed (never for a partial upload; Mkdir's directory markers are not
// uploads), Failed after a failed Close, an Abort, or the upload's context ending first.
//
// The decorator needs the upload's storage.Committer (bucket, key, size, SHA-256 of what was
// committed), so it must sit inside decorators that hide it: wrap the store's view first,
// then count metrics around it.
//
// Publishing goes to a Sink that must not block: a slow or failing event bus never delays or
// fails the client's transfer.
package transferevents

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/pipeline/event"
)

// Sink receives gateway events. Publish must not block (queue or drop instead).
type Sink interface {
	Publish(event.Event[event.GatewayDetail])
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(event.Event[event.GatewayDetail])

// Publish calls f(e).
func (f SinkFunc) Publish(e event.Event[event.GatewayDetail]) { f(e) }

// Config fills the event envelope and tunes logging. Zero values are fine.
type Config struct {
	// Account and Region fill the envelope for the embedded bus; on AWS, EventBridge assigns
	// its own and these are not sent.
	Account, Region string
	// Logger receives events that could not be built (a bug, logged at error); nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Events builds gateway events and hands them to a sink.
type Events struct {
	sink Sink
	cfg  Config
	log  *slog.Logger
}

// New returns an emitter publishing to sink.
func New(sink Sink, cfg Config) *Events {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Events{sink: sink, cfg: cfg, log: log.With("component", "transferevents")}
}

// maxReason bounds failure_reason: it is a short reason, not a log.
const maxReason = 256

func reason(prefix string, err error) string {
	r := prefix
	if err != nil {
		r += ": " + err.Error()
	}
	if len(r) > maxReason {
		r = strings.ToValidUTF8(r[:maxReason], "")
	}
	return r
}

func (e *Events) now() time.Time { return e.cfg.Now().UTC() }

// emit builds, validates and publishes one event. An invalid event is a bug in the caller or
// a store without Committer; it is logged, not sent.
func (e *Events) emit(detailType string, d event.GatewayDetail) {
	ev, err := event.NewGatewayEvent(detailType, d, e.cfg.Account, e.cfg.Region)
	if err != nil {
		e.log.Error("gateway event not sent", "detail_type", detailType, "user", d.User,
			"protocol", d.Protocol, "transfer_id", d.TransferID, "err", err)
		return
	}
	e.sink.Publish(ev)
}

// Failed sends Transfer Failed for an upload that no decorator saw end: one a crashed process
// left, which recovery aborted (package recovery). d must name the user, protocol, session,
// client, bucket, key and the failure reason; EndTime defaults to now.
func (e *Events) Failed(d event.GatewayDetail) {
	if d.EndTime.IsZero() {
		d.EndTime = e.now()
	}
	if len(d.FailureReason) > maxReason {
		d.FailureReason = strings.ToValidUTF8(d.FailureReason[:maxReason], "")
	}
	e.emit(event.DetailTypeTransferFailed, d)
}

// Wrap returns fsys with an event for every upload. protocol is used when CreateOptions does
// not name one. Optional abilities of fsys (Setstater, Hasher, SpaceReporter) stay visible, as do the
// upload's (AttrRecorder, Committer).
func (e *Events) Wrap(fsys storage.FS, protocol string) storage.FS {
	return &eventsFS{FS: fsys, e: e, protocol: protocol}
}

type eventsFS struct {
	storage.FS
	e        *Events
	protocol string
}

// Unwrap lets callers reach the optional interfaces of the store inside (storage.As).
func (f *eventsFS) Unwrap() storage.FS { return f.FS }

func (f *eventsFS) Create(ctx context.Context, name string, opts storage.CreateOptions) (storage.Upload, error) {
	up, err := f.FS.Create(ctx, name, opts)
	if err != nil {
		return nil, err // refused before any transfer began: not a transfer event
	}
	if opts.Protocol == "" {
		opts.Protocol = f.protocol
	}
	u := &upload{Upload: up, e: f.e, name: name, opts: opts, start: f.e.now()}
	// A store aborts by itself when ctx ends; make sure that upload still gets its event
	// even if the front end never calls Close or Abort on it. (The callback may run before
	// stopWatch is assigned, so it must not use it.)
	u.stopWatch = context.AfterFunc(ctx, func() {
		u.fail(reason("aborted", context.Cause(ctx)), true)
	})
	return u, nil
}

type upload struct {
	storage.Upload
	e         *Events
	name      string
	opts      storage.CreateOptions
	start     time.Time
	stopWatch func() bool

	mu      sync.Mutex
	bytes   int64
	closing bool // a Close is committing: its result decides the event
	sent    bool // the one event for this upload is decided
}

var (
	_ storage.Upload        = (*upload)(nil)
	_ storage.UploadWrapper = (*upload)(nil)
)

// Unwrap lets callers reach the optional interfaces of the upload inside (storage.UploadAs).
func (u *upload) Unwrap() storage.Upload { return u.Upload }

func (u *upload) Write(p []byte) (int, error) {
	n, err := u.Upload.Write(p)
	u.mu.Lock()
	u.bytes += int64(n)
	u.mu.Unlock()
	return n, err
}

func (u *upload) Close() error {
	u.mu.Lock()
	if u.sent || u.closing {
		u.mu.Unlock()
		return u.Upload.Close()
	}
	u.closing = true
	u.mu.Unlock()

	err := u.Upload.Close()
	u.stopWatch()
	if err != nil {
		prefix := "commit failed"
		if errors.Is(err, storage.ErrAborted) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			prefix = "aborted"
		}
		u.fail(reason(prefix, err), false)
		return err
	}
	u.complete()
	return nil
}

func (u *upload) Abort(cause error) error {
	err := u.Upload.Abort(cause)
	u.stopWatch()
	u.fail(reason("aborted", cause), true)
	return err
}

// committed asks the store what it committed, through any decorator inside this one.
func (u *upload) committed() (storage.Object, bool) {
	if c, ok := storage.UploadAs[storage.Committer](u.Upload); ok {
		return c.Committed()
	}
	return storage.Object{}, false
}

// detail fills what every transfer event carries; called with u.mu held.
func (u *upload) detail() event.GatewayDetail {
	return event.GatewayDetail{
		User: u.opts.User, Protocol: u.opts.Protocol, SessionID: u.opts.SessionID,
		ClientAddress: u.opts.ClientAddr, Key: strings.TrimPrefix(u.name, "/"),
		Bytes: u.bytes, TransferID: u.opts.TransferID, StartTime: u.start, EndTime: u.e.now(),
	}
}

// fail sends Transfer Failed unless the upload's event is already decided. With
// unlessClosing (Abort, context end) it also defers to a Close in progress, whose result
// reflects the abort if the abort won.
func (u *upload) fail(why string, unlessClosing bool) {
	u.mu.Lock()
	if u.sent || (unlessClosing && u.closing) {
		u.mu.Unlock()
		return
	}
	u.sent = true
	d := u.detail()
	u.mu.Unlock()
	obj, _ := u.committed() // not committed: bucket and key only
	d.Bucket, d.Key = obj.Bucket, obj.Key
	d.FailureReason = why
	u.e.emit(event.DetailTypeTransferFailed, d)
}

func (u *upload) complete() {
	u.mu.Lock()
	if u.sent {
		u.mu.Unlock()
		return
	}
	u.sent = true
	d := u.detail()
	u.mu.Unlock()
	obj, ok := u.committed()
	if !ok {
		// A store without Committer (or a decorator hiding it): no SHA-256 to report, and
		// a Completed event without one would be invalid.
		u.e.log.Error("gateway event not sent: upload does not report what it committed",
			"user", d.User, "transfer_id", d.TransferID, "path", u.name)
		return
	}
	d.Bucket, d.Key, d.Bytes, d.SHA256 = obj.Bucket, obj.Key, obj.Size, obj.SHA256
	u.e.emit(event.DetailTypeTransferCompleted, d)
}
