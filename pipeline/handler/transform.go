package handler

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/route"
	"github.com/ferrygw/ferry/pipeline/s3status"
	"github.com/ferrygw/ferry/pipeline/tracking"
	"github.com/ferrygw/ferry/pipeline/transform"
)

// Object metadata the gateway writes and the handler carries onto outputs.
const (
	MetaUser       = "ferry-user"
	MetaTransferID = "ferry-transfer-id"
	MetaProtocol   = "ferry-protocol"
	MetaSourceKey  = "ferry-source-key"
	MetaReason     = "ferry-reject-reason"
)

// S3API is the S3 calls the transform handler makes; *s3.Client satisfies it.
type S3API interface {
	ledger.API
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	CopyObject(ctx context.Context, in *s3.CopyObjectInput, optFns ...func(*s3.Options)) (*s3.CopyObjectOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, optFns ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
}

var _ S3API = (*s3.Client)(nil)

// Emitter publishes pipeline events; *bus.Bus satisfies it, and EventBridgeEmitter does on AWS.
// An error means "not published".
type Emitter interface {
	Put(ctx context.Context, events ...event.Envelope) error
}

// TransformConfig wires a Transform.
type TransformConfig struct {
	S3       S3API
	Routes   *route.Config
	Registry *transform.Registry // nil: transform.Default()
	Ledger   *ledger.Ledger      // required: idempotency and batches
	Events   Emitter
	Metrics  Recorder // nil: none
	Log      *slog.Logger
	Account  string // envelope fields of published events (EventBridge overwrites them)
	Region   string
	PartSize int64 // multipart part size for outputs; default 8 MiB (min 5 MiB)
}

// Transform routes each new object through its route's transform chain into the output
// key(s) and publishes File Processed or File Rejected.
type Transform struct {
	cfg TransformConfig
	log *slog.Logger
}

// NewTransform checks cfg and returns the handler.
func NewTransform(cfg TransformConfig) (*Transform, error) {
	var errs []error
	if cfg.S3 == nil {
		errs = append(errs, errors.New("transform handler: S3 client required"))
	}
	if cfg.Routes == nil {
		errs = append(errs, errors.New("transform handler: routes required"))
	}
	if cfg.Ledger == nil {
		errs = append(errs, errors.New("transform handler: ledger required"))
	}
	if cfg.Events == nil {
		errs = append(errs, errors.New("transform handler: event emitter required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Registry == nil {
		cfg.Registry = transform.Default()
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 8 << 20
	}
	if cfg.PartSize < 5<<20 {
		cfg.PartSize = 5 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Transform{cfg: cfg, log: cfg.Log}, nil
}

// Deliver makes the handler a bus target.
func (h *Transform) Deliver(ctx context.Context, ev []byte) error { return h.Handle(ctx, ev) }

// input is one file to process, as held in the ledger for batches.
type input struct {
	Bucket     string    `json:"bucket"`
	Key        string    `json:"key"`
	ETag       string    `json:"etag"`
	Size       int64     `json:"size"`
	User       string    `json:"user,omitempty"` // metadata ferry-user
	TransferID string    `json:"transfer_id,omitempty"`
	Protocol   string    `json:"protocol,omitempty"` // metadata ferry-protocol
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"` // event time: output keys ({date}) are deterministic
	// Received is when the upload completed, for the notice: the event time, or the object's
	// LastModified for a batch file found by listing.
	Received time.Time `json:"received,omitzero"`
}

func (in input) object() route.Object {
	return route.Object{Bucket: in.Bucket, Key: in.Key, Size: in.Size, User: in.User}
}

// Handle processes one S3 Object Created event. Events it does not act on (other types,
// directory markers, ignored or unrouted keys, superseded objects, duplicates) return nil;
// transient failures return an error so the event is retried.
func (h *Transform) Handle(ctx context.Context, raw json.RawMessage) error {
	e, err := event.DecodeS3(raw)
	if err != nil {
		h.log.ErrorContext(ctx, "transform: dropping an event that is not an S3 object event", "err", err)
		return nil
	}
	if e.DetailType != event.DetailTypeObjectCreated {
		return nil
	}
	d := e.Detail
	o := d.Object
	log := h.log.With("bucket", d.Bucket.Name, "key", o.Key, "etag", o.ETag, "reason", d.Reason, "eventId", e.ID)
	if o.IsDirectoryMarker() || h.isLedgerKey(d.Bucket.Name, o.Key) || h.cfg.Routes.Ignored(o.Key) {
		log.DebugContext(ctx, "transform: ignored")
		return nil
	}
	head, err := h.cfg.S3.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(d.Bucket.Name), Key: aws.String(o.Key), IfMatch: aws.String(quote(o.ETag)),
	})
	switch {
	case s3status.Is(err, http.StatusNotFound), s3status.Is(err, http.StatusPreconditionFailed):
		log.InfoContext(ctx, "transform: object deleted or replaced since the event; its own event follows")
		return nil
	case err != nil:
		return fmt.Errorf("transform: head s3://%s/%s: %w", d.Bucket.Name, o.Key, err)
	}
	in := input{
		Bucket: d.Bucket.Name, Key: o.Key, ETag: o.ETag, Size: aws.ToInt64(head.ContentLength),
		User: head.Metadata[MetaUser], TransferID: head.Metadata[MetaTransferID], Protocol: head.Metadata[MetaProtocol],
		Reason: d.Reason, At: e.Time, Received: e.Time,
	}
	if in.TransferID != "" {
		log = log.With("transferId", in.TransferID)
	}
	if r, ok := h.cfg.Routes.MatchMarker(in.object()); ok && r.CompleteOn != nil {
		h.track(ctx, log, h.received(in, r, tracking.RoleMarker, ""))
		return h.completeBatch(ctx, log, r, in)
	}
	r, ok := h.cfg.Routes.Match(in.object())
	if !ok {
		if data, alg, ok := h.cfg.Routes.SidecarOf(in.object()); ok {
			h.track(ctx, log, h.received(in, nil, tracking.RoleSidecar, data))
			return h.sidecarArrived(ctx, log.With("sidecar", in.Key), in.Bucket, data, alg)
		}
		h.track(ctx, log, h.received(in, nil, "", ""))
		log.DebugContext(ctx, "transform: no route")
		return nil
	}
	h.track(ctx, log, h.received(in, r, "", ""))
	log = log.With("route", r.Name)
	if r.CompleteOn != nil {
		done, err := h.cfg.Ledger.Has(ctx, "object/"+factID(in))
		if err != nil {
			return err
		}
		if done { // a late event of a file its batch's marker already took
			log.InfoContext(ctx, "transform: already processed in its batch")
			return nil
		}
		name := batchDir(r, in.Key) + hashOf(in.Key)
		if err := h.cfg.Ledger.Put(ctx, name, in); err != nil {
			return err
		}
		h.track(ctx, log, h.step(in, tracking.Record{Kind: tracking.KindWaiting, For: tracking.ForMarker, What: r.CompleteOn.Marker}))
		log.InfoContext(ctx, "transform: held until the batch marker arrives", "marker", r.CompleteOn.Marker)
		return nil
	}
	if r.Sidecar != "" {
		sidecar := in.Key + "." + r.Sidecar
		_, err := h.cfg.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(in.Bucket), Key: aws.String(sidecar)})
		switch {
		case s3status.Is(err, http.StatusNotFound):
			// Clients often send the digest after the data: the sidecar's own event resumes.
			h.track(ctx, log, h.step(in, tracking.Record{Kind: tracking.KindWaiting, For: tracking.ForSidecar, What: sidecar}))
			log.InfoContext(ctx, "transform: waiting for the sidecar", "sidecar", sidecar)
			return nil
		case err != nil:
			return fmt.Errorf("transform: head sidecar s3://%s/%s: %w", in.Bucket, sidecar, err)
		}
	}
	return withTransfer(in.TransferID, h.processOnce(ctx, log, r, in))
}

// withTransfer names the transfer in a failure, which the Lambda runtime logs and a
// dead-letter entry keeps, so a search for the id finds the failures too.
func withTransfer(id string, err error) error {
	if err == nil || id == "" {
		return err
	}
	return fmt.Errorf("%w (transfer %s)", err, id)
}

// sidecarArrived handles the event of a digest file ("a.csv.sha256"): when its input is
// already there and routed to a route that reads such sidecars, the input is processed now
// (its own event found no sidecar and waited). Both events may race: the ledger lets one run.
func (h *Transform) sidecarArrived(ctx context.Context, log *slog.Logger, bucket, data, alg string) error {
	head, err := h.cfg.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(data)})
	switch {
	case s3status.Is(err, http.StatusNotFound):
		log.InfoContext(ctx, "transform: sidecar before its input; the input's event processes it", "input", data)
		return nil
	case err != nil:
		return fmt.Errorf("transform: head s3://%s/%s: %w", bucket, data, err)
	}
	in := input{
		Bucket: bucket, Key: data, ETag: strings.Trim(aws.ToString(head.ETag), `"`), Size: aws.ToInt64(head.ContentLength),
		User: head.Metadata[MetaUser], TransferID: head.Metadata[MetaTransferID], Protocol: head.Metadata[MetaProtocol],
		Reason: event.ReasonPutObject, At: aws.ToTime(head.LastModified).UTC(), Received: aws.ToTime(head.LastModified).UTC(),
	}
	r, ok := h.cfg.Routes.Match(in.object())
	if !ok || r.Sidecar != alg || r.CompleteOn != nil { // a batch reads its sidecars when the marker comes
		log.DebugContext(ctx, "transform: sidecar of an input no route waits for", "input", data)
		return nil
	}
	log = log.With("key", data, "etag", in.ETag, "route", r.Name)
	if in.TransferID != "" {
		log = log.With("transferId", in.TransferID)
	}
	return h.processOnce(ctx, log, r, in)
}

// processOnce processes one input of a route without batch completion, at most once per
// version of the object.
func (h *Transform) processOnce(ctx context.Context, log *slog.Logger, r *route.Route, in input) error {
	return h.once(ctx, log, in, func() (*event.FileDetail, error) {
		if seen, how, err := h.seenContent(ctx, in); err != nil {
			return nil, err
		} else if seen {
			log.InfoContext(ctx, "transform: copy of content already processed; not processing again", "recognisedBy", how)
			h.track(ctx, log, h.step(in, tracking.Record{Kind: tracking.KindCopy}))
			return nil, nil
		}
		start := time.Now()
		res, err := h.process(ctx, log, r, in)
		if err != nil || res == nil {
			return nil, err
		}
		h.record(r, []event.FileResult{*res}, time.Since(start))
		return h.detail(r, factID(in), in, "", []event.FileResult{*res}), nil
	})
}

// readSidecar fetches and parses the digest file of an input. A missing or malformed sidecar
// is a Rejection: by then the input is due (its batch marker, or the sidecar's own event).
func (h *Transform) readSidecar(ctx context.Context, bucket, key, alg string) (transform.Checksum, error) {
	get, err := h.cfg.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	switch {
	case s3status.Is(err, http.StatusNotFound):
		return transform.Checksum{}, &transform.Rejection{Reason: "checksum: no sidecar " + path.Base(key)}
	case err != nil:
		return transform.Checksum{}, fmt.Errorf("transform: get sidecar s3://%s/%s: %w", bucket, key, err)
	}
	defer get.Body.Close()
	return transform.ParseSidecar(get.Body, alg)
}

// once runs work for the fact of subject (a file, or a batch's marker) at most once: claim in
// the ledger, work, publish, mark done. work returning a nil detail means "nothing to
// publish". The inputs of the detail are remembered by content so a later copy of them is not
// processed again, and each gets its status record.
func (h *Transform) once(ctx context.Context, log *slog.Logger, subject input, work func() (*event.FileDetail, error)) error {
	name := ObjectFact(factID(subject))
	state, _, err := h.cfg.Ledger.ClaimWait(ctx, name, busyWait)
	if err != nil {
		return err
	}
	switch state {
	case ledger.Done:
		log.InfoContext(ctx, "transform: duplicate event, already handled")
		return nil
	case ledger.Busy:
		return fmt.Errorf("transform %s: %w", name, ErrBusy)
	}
	release := func(cause error) error {
		if rerr := h.cfg.Ledger.Release(ctx, name); rerr != nil {
			log.WarnContext(ctx, "transform: release claim", "err", rerr)
		}
		return cause
	}
	det, err := work()
	if err != nil {
		return release(err)
	}
	finished := time.Now().UTC() // the outcome's time, before its event goes out
	if det != nil {
		fe, err := event.NewFileEvent(*det, h.cfg.Account, h.cfg.Region, time.Now())
		if err != nil {
			return release(fmt.Errorf("transform: build event: %w", err))
		}
		env, err := event.Raw(fe)
		if err != nil {
			return release(err)
		}
		if err := h.cfg.Events.Put(ctx, env); err != nil {
			return release(fmt.Errorf("transform: publish %s: %w", fe.DetailType, err))
		}
		log.InfoContext(ctx, "transform: published", "detailType", fe.DetailType, "files", len(det.Files))
	}
	if det != nil {
		for _, f := range det.Files {
			h.rememberContent(ctx, log, det.Bucket, f)
		}
		h.trackDetail(ctx, log, subject, det, finished)
	}
	if err := h.cfg.Ledger.Done(ctx, name, det); err != nil {
		// Published but not marked: a redelivery redoes the same outputs and event, which
		// the notify handler's ledger (same detail id) absorbs.
		log.ErrorContext(ctx, "transform: mark done", "err", err)
	}
	return nil
}

func (h *Transform) detail(r *route.Route, id string, in input, marker string, files []event.FileResult) *event.FileDetail {
	d := &event.FileDetail{
		ID: id, Route: r.Name, Dataset: r.Dataset, Topic: r.Topic,
		User: r.UserOf(in.object()), TransferID: in.TransferID, Bucket: in.Bucket,
		Marker: marker, Files: files, Attributes: r.Attributes,
	}
	if marker != "" {
		d.MarkerReceived = in.receivedAt().UTC()
	}
	return d
}

func (h *Transform) record(r *route.Route, files []event.FileResult, d time.Duration) {
	if h.cfg.Metrics == nil {
		return
	}
	s := Sample{Route: r.Name, Dataset: r.Dataset, Duration: d}
	for _, f := range files {
		if f.TransferID != "" {
			s.TransferIDs = append(s.TransferIDs, f.TransferID)
		}
		s.BytesIn += f.Size
		if f.Reason != "" {
			s.Rejected++
			continue
		}
		s.Processed++
		for _, o := range f.Outputs {
			s.BytesOut += o.Size
		}
	}
	h.cfg.Metrics.Record(s)
}

// errSuperseded: the object changed between the event and the read.
var errSuperseded = errors.New("object replaced since the event")

// process streams one input through r's chain into its output keys. A Rejection (or an output
// name that renders to no clean key) quarantines the input instead. A nil result means the
// object is gone or was replaced (its own event handles the new one).
func (h *Transform) process(ctx context.Context, log *slog.Logger, r *route.Route, in input) (*event.FileResult, error) {
	ts := make([]transform.Transform, 0, len(r.Steps))
	for _, st := range r.Steps {
		t, err := h.cfg.Registry.New(transform.Step{Name: st.Name, Options: st.Options})
		if err != nil {
			return nil, fmt.Errorf("transform: route %s: %w", r.Name, err)
		}
		ts = append(ts, t)
	}
	get, err := h.cfg.S3.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(in.Bucket), Key: aws.String(in.Key), IfMatch: aws.String(quote(in.ETag)),
	})
	switch {
	case s3status.Is(err, http.StatusNotFound), s3status.Is(err, http.StatusPreconditionFailed):
		log.InfoContext(ctx, "transform: object deleted or replaced; skipped", "err", errSuperseded)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("transform: get s3://%s/%s: %w", in.Bucket, in.Key, err)
	}
	defer get.Body.Close()
	// The input's SHA-256, taken while the chain streams it: its content identity (a later
	// copy of the same bytes is recognised by it) and what the notice tells the reader.
	digest := sha256.New()
	body := io.TeeReader(get.Body, digest)
	user := r.UserOf(in.object())
	meta := map[string]string{MetaSourceKey: in.Key}
	if user != "" {
		meta[MetaUser] = user
	}
	if in.TransferID != "" {
		meta[MetaTransferID] = in.TransferID
	}
	received := in.Received
	if received.IsZero() {
		received = in.At
	}
	res := &event.FileResult{Key: in.Key, ETag: in.ETag, Size: in.Size, User: user, TransferID: in.TransferID,
		Protocol: in.Protocol, Received: received.UTC()}
	cctx := transform.WithCounter(ctx)
	if r.Sidecar != "" {
		var sum transform.Checksum
		if sum, err = h.readSidecar(ctx, in.Bucket, in.Key+"."+r.Sidecar, r.Sidecar); err == nil {
			cctx = transform.WithChecksum(cctx, sum)
		}
	}
	if err == nil {
		err = h.chain(cctx, r, in, ts, body, meta, res)
	}
	if err == nil {
		// Every transform reads its input to the end on success; this only makes sure.
		if _, derr := io.Copy(io.Discard, body); derr == nil {
			res.SHA256 = hex.EncodeToString(digest.Sum(nil))
		}
	}
	res.Records = transform.Records(cctx)
	var rej *transform.Rejection
	switch {
	case err == nil:
		log.InfoContext(ctx, "transform: processed", "outputs", len(res.Outputs), "records", res.Records)
		return res, nil
	case errors.As(err, &rej):
		res.Reason, res.Line = rej.Reason, rej.Line
	case errors.Is(err, route.ErrBadKey), errors.Is(err, route.ErrNoUser):
		res.Reason = err.Error()
	default:
		return nil, fmt.Errorf("transform: s3://%s/%s through route %s: %w", in.Bucket, in.Key, r.Name, err)
	}
	// Rejected: outputs already written are withdrawn, the input goes to quarantine.
	for _, o := range res.Outputs {
		if _, derr := h.cfg.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(in.Bucket), Key: aws.String(o.Key)}); derr != nil {
			return nil, fmt.Errorf("transform: withdraw output %s: %w", o.Key, derr)
		}
	}
	res.Outputs, res.Records = nil, 0
	qkey, err := r.QuarantineKey(in.object(), in.At)
	if err != nil {
		return nil, fmt.Errorf("transform: quarantine key for %s: %w", in.Key, err)
	}
	meta[MetaReason] = asciiOnly(res.Reason)
	if _, err := h.cfg.S3.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: aws.String(in.Bucket), Key: aws.String(qkey),
		CopySource:        aws.String(copySource(in.Bucket, in.Key)),
		CopySourceIfMatch: aws.String(quote(in.ETag)),
		Metadata:          meta, MetadataDirective: s3types.MetadataDirectiveReplace,
	}); err != nil {
		return nil, fmt.Errorf("transform: quarantine %s -> %s: %w", in.Key, qkey, err)
	}
	res.Quarantine = qkey
	if res.Reason == "" {
		res.Reason = "rejected"
	}
	log.WarnContext(ctx, "transform: rejected, input quarantined", "quarantine", qkey, "why", res.Reason, "line", res.Line)
	return res, nil
}

func (h *Transform) isLedgerKey(bucket, key string) bool {
	l := h.cfg.Ledger
	return bucket == l.Bucket() && len(key) >= len(l.Prefix()) && key[:len(l.Prefix())] == l.Prefix()
}

// factID names the fact "this version of this object": bucket, key and etag.
func factID(in input) string { return tracking.FileID(in.Bucket, in.Key, in.ETag) }

// batchDir is the ledger folder holding the files of the batch that key's directory forms.
func batchDir(r *route.Route, key string) string {
	return "batch/" + safeName(r.Name) + "/" + hashOf(path.Dir(key)) + "/"
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// copySource is CopyObject's x-amz-copy-source: the SDK sends it as given, so the key's
// segments must be URL-encoded (spaces, non-ASCII).
func copySource(bucket, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return bucket + "/" + strings.Join(segs, "/")
}

func quote(etag string) string { return `"` + etag + `"` }

// asciiOnly keeps metadata values to what S3 accepts in headers.
func asciiOnly(s string) string {
	b := []byte(s)
	out := b[:0]
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			out = append(out, c)
		}
	}
	if len(out) > 512 {
		out = out[:512]
	}
	return string(out)
}

// upload streams body to bucket/key: one PutObject when it fits in a part, else a multipart
// upload (one part buffer in memory). It returns the bytes written.
func (h *Transform) upload(ctx context.Context, bucket, key string, body io.Reader, meta map[string]string) (int64, error) {
	var buf []byte
	n, err := readPart(body, &buf, int(h.cfg.PartSize))
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		if _, err := h.cfg.S3.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(buf[:n]),
			ContentLength: aws.Int64(int64(n)), Metadata: meta,
		}); err != nil {
			return 0, fmt.Errorf("put s3://%s/%s: %w", bucket, key, err)
		}
		return int64(n), nil
	}
	if err != nil {
		return 0, err
	}
	mpu, err := h.cfg.S3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Metadata: meta,
	})
	if err != nil {
		return 0, fmt.Errorf("create multipart upload s3://%s/%s: %w", bucket, key, err)
	}
	abort := func(cause error) (int64, error) {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = h.cfg.S3.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: mpu.UploadId})
		return 0, cause
	}
	var parts []s3types.CompletedPart
	var total int64
	for num := int32(1); ; num++ {
		if num > 10000 {
			return abort(fmt.Errorf("upload s3://%s/%s: more than 10000 parts", bucket, key))
		}
		up, err := h.cfg.S3.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(bucket), Key: aws.String(key), UploadId: mpu.UploadId,
			PartNumber: aws.Int32(num), Body: bytes.NewReader(buf[:n]), ContentLength: aws.Int64(int64(n)),
		})
		if err != nil {
			return abort(fmt.Errorf("upload part %d of s3://%s/%s: %w", num, bucket, key, err))
		}
		parts = append(parts, s3types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(num)})
		total += int64(n)
		n, err = readPart(body, &buf, int(h.cfg.PartSize))
		if err == io.EOF {
			break
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			return abort(err)
		}
		if err == io.ErrUnexpectedEOF {
			up, err := h.cfg.S3.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: aws.String(bucket), Key: aws.String(key), UploadId: mpu.UploadId,
				PartNumber: aws.Int32(num + 1), Body: bytes.NewReader(buf[:n]), ContentLength: aws.Int64(int64(n)),
			})
			if err != nil {
				return abort(fmt.Errorf("upload part %d of s3://%s/%s: %w", num+1, bucket, key, err))
			}
			parts = append(parts, s3types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(num + 1)})
			total += int64(n)
			break
		}
	}
	if _, err := h.cfg.S3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key), UploadId: mpu.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		return abort(fmt.Errorf("complete multipart upload s3://%s/%s: %w", bucket, key, err))
	}
	return total, nil
}

// readPart reads the next part of an output, up to size bytes, into *buf and returns how many
// it read, with io.ReadFull's errors (io.EOF: none; io.ErrUnexpectedEOF: fewer than size). The
// buffer starts small, doubles as the part fills, up to size, and is reused for the next part:
// the output of a small input costs a few KiB, not a whole part. (A part-sized buffer per file,
// zeroed and then collected, was the largest cost of a burst of small files in the embedded
// default, and under its memory limit it kept the collector running.)
func readPart(r io.Reader, buf *[]byte, size int) (int, error) {
	b := (*buf)[:cap(*buf)]
	n := 0
	for n < size {
		if n == len(b) {
			b = slices.Grow(b, min(max(2*n, minPartBuffer), size)-n)
			b = b[:cap(b)]
		}
		m, err := r.Read(b[n:min(len(b), size)])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			*buf = b
			return n, err
		}
	}
	*buf = b
	switch {
	case n == size:
		return n, nil
	case n == 0:
		return 0, io.EOF
	default:
		return n, io.ErrUnexpectedEOF
	}
}

// minPartBuffer is where a part buffer starts.
const minPartBuffer = 32 << 10

// chain streams body through ts, uploading each output to its key and listing it in res.
func (h *Transform) chain(ctx context.Context, r *route.Route, in input, ts []transform.Transform, body io.Reader, meta map[string]string, res *event.FileResult) error {
	return transform.Chain(ctx, ts, transform.File{Name: path.Base(in.Key), Body: body}, func(f transform.File) error {
		key, err := r.OutputKey(in.object(), f.Name, in.At)
		if err != nil {
			return err
		}
		n, err := h.upload(ctx, in.Bucket, key, f.Body, meta)
		if err != nil {
			return err
		}
		res.Outputs = append(res.Outputs, event.FileOutput{Key: key, Size: n})
		return nil
	})
}
