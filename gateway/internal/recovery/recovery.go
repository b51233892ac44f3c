// Package recovery finds the multipart uploads a gateway process left when it died (kill -9, an
// out-of-memory kill, a lost host) and aborts them, with a Transfer Failed event for each, so no
// pending upload stays forever and the failure is known.
//
// # Why a journal
//
// S3 keeps no trace of who started a multipart upload that anyone can read back:
// ListMultipartUploads gives key, upload id and initiation time, never the metadata set at
// CreateMultipartUpload (user, transfer id), and the initiator is the gateway's one IAM role.
// The bucket may also receive multipart uploads from S3-native clients, which must never be
// aborted. And the age of an upload says nothing about its owner being alive: a slow client
// fills a 5 MiB part in an hour. So each replica records what it owns, in the bucket:
//
//	<prefix><replica>/beat-<time>/     heartbeat: a new one every Heartbeat while the replica has
//	                                   uploads in flight (the previous one is then deleted; an
//	                                   idle replica writes nothing)
//	<prefix><replica>/upload-<id>/     one per multipart upload in flight, with who and what in its
//	                                   metadata (bucket, user, protocol, client, session, transfer
//	                                   id, start); written after CreateMultipartUpload, deleted
//	                                   when the upload completes or is aborted
//
// Both are zero-byte directory markers: S3 tools, the pipeline and the embedded default's
// notifications ignore those. A heartbeat is a new key each time rather than one key rewritten
// because S3-compatible servers on a file system (versitygw) keep a rewritten directory
// marker's LastModified: only a creation is dated everywhere.
//
// # Who is gone, safely with several replicas
//
// A replica whose heartbeat is older than StaleAfter is gone: its uploads can make no progress
// (a live replica rewrites its heartbeat every Heartbeat; StaleAfter is at least three of them,
// so a slow write or two are tolerated). Ages are measured against S3's own clock (the Date of
// the listing's response), so replicas' clocks do not matter. Every replica scans at start and
// after each heartbeat; the first to abort an upload (AbortMultipartUpload succeeding, not
// NoSuchUpload) sends its event. A replica that is alive but cannot write its heartbeat for
// StaleAfter (cut off from S3) loses its uploads, which could not progress anyway. A replica
// recovering an upload first claims it (<prefix><gone>/claim-<id>/, written with
// If-None-Match: *), so of several replicas scanning at once only one aborts it and sends the
// event; a claim whose claimer died is taken over once older than StaleAfter.
//
// With a fixed ReplicaID (one process per id), a restarted process also knows at once that the
// uploads recorded under its id are its previous life's, and recovers them before serving.
package recovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/pipeline/event"
)

// API is the part of S3 the journal calls; *s3.Client satisfies it (and s3store.API, for aborts).
type API interface {
	s3store.API
	ListMultipartUploads(context.Context, *s3.ListMultipartUploadsInput, ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error)
}

var _ API = (*s3.Client)(nil)

// Defaults for zero Config fields.
const (
	DefaultPrefix     = ".ferry/uploads/"
	DefaultHeartbeat  = 30 * time.Second
	DefaultStaleAfter = 5 * time.Minute
)

// opTimeout bounds each journal request, so a slow S3 never holds an upload.
const opTimeout = 10 * time.Second

// Config configures a Journal.
type Config struct {
	Bucket     string        // where the journal lives (the default bucket)
	Prefix     string        // key prefix of the journal, ending in "/"
	ReplicaID  string        // this process's name in the journal; "" = random per start
	Heartbeat  time.Duration // how often the heartbeat is rewritten and the journal scanned
	StaleAfter time.Duration // a replica whose heartbeat is older is gone
	Logger     *slog.Logger
	// Failed receives a Transfer Failed detail for every upload recovered; nil sends none.
	Failed func(event.GatewayDetail)
}

// Journal records this replica's multipart uploads and recovers those of replicas gone. It
// implements s3store.Journal.
type Journal struct {
	api       API
	cfg       Config
	log       *slog.Logger
	host      string
	recovered atomic.Uint64
	records   atomic.Int64 // this replica's records written and not yet deleted

	beatMu   sync.Mutex
	lastBeat time.Time // when the current heartbeat was written
	beatKey  string    // the current heartbeat's key ("" when none)
}

var _ s3store.Journal = (*Journal)(nil)

// New checks cfg and returns a journal; Start begins its work.
func New(api API, cfg Config) (*Journal, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.StaleAfter == 0 {
		cfg.StaleAfter = DefaultStaleAfter
	}
	var errs []error
	if cfg.Bucket == "" {
		errs = append(errs, errors.New("no bucket"))
	}
	if !strings.HasSuffix(cfg.Prefix, "/") || strings.HasPrefix(cfg.Prefix, "/") {
		errs = append(errs, fmt.Errorf("prefix %q must end with / and not start with one", cfg.Prefix))
	}
	if cfg.StaleAfter < 3*cfg.Heartbeat {
		errs = append(errs, fmt.Errorf("stale after %s is less than three heartbeats (%s)", cfg.StaleAfter, cfg.Heartbeat))
	}
	if err := CheckReplicaID(cfg.ReplicaID); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("recovery: %w", err)
	}
	if cfg.ReplicaID == "" {
		b := make([]byte, 8)
		rand.Read(b)
		cfg.ReplicaID = hex.EncodeToString(b)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	return &Journal{api: api, cfg: cfg, host: host, log: log.With("component", "recovery", "replica", cfg.ReplicaID)}, nil
}

// CheckReplicaID reports whether id can name a replica in the journal ("" is fine: random).
func CheckReplicaID(id string) error {
	if len(id) > 64 {
		return fmt.Errorf("replica id %q is longer than 64 characters", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("replica id %q may only hold letters, digits, '-', '_' and '.'", id)
		}
	}
	return nil
}

// ReplicaID is this process's name in the journal.
func (j *Journal) ReplicaID() string { return j.cfg.ReplicaID }

// Recovered counts the uploads this replica aborted for replicas gone
// (ferry_orphan_uploads_aborted_total).
func (j *Journal) Recovered() uint64 { return j.recovered.Load() }

func (j *Journal) replicaKey(replica string) string { return j.cfg.Prefix + replica + "/" }

// Name prefixes of a replica's entries.
const (
	beatPrefix   = "beat-"
	uploadPrefix = "upload-"
	claimPrefix  = "claim-"
)

// errClaimed says another replica is recovering an upload.
var errClaimed = errors.New("another replica is recovering it")

func (j *Journal) recordKey(uploadID string) string {
	return j.replicaKey(j.cfg.ReplicaID) + uploadPrefix + url.PathEscape(uploadID) + "/"
}

// Metadata names of a record.
const (
	metaBucket     = "bucket"
	metaUser       = "user"
	metaProtocol   = "protocol"
	metaClient     = "client"
	metaSession    = "session"
	metaTransferID = "transfer-id"
	metaStarted    = "started"
	metaHost       = "host"
)

// Started implements s3store.Journal: it writes the upload's record.
func (j *Journal) Started(ctx context.Context, u s3store.PendingUpload) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	meta := map[string]string{
		metaBucket: u.Bucket, metaUser: u.Opts.User, metaProtocol: u.Opts.Protocol, metaClient: u.Opts.ClientAddr,
		metaSession: u.Opts.SessionID, metaTransferID: u.Opts.TransferID, metaStarted: u.Started.UTC().Format(time.RFC3339Nano),
	}
	for k, v := range meta {
		meta[k] = encode(v)
	}
	// A record is only as good as a fresh heartbeat next to it.
	if err := j.beatIfOlder(ctx, j.cfg.Heartbeat/2); err != nil {
		j.log.WarnContext(ctx, "heartbeat not written", "err", err)
	}
	if err := j.marker(ctx, j.recordKey(u.UploadID), meta); err != nil {
		j.log.WarnContext(ctx, "multipart upload not recorded: a crash would leave it to the bucket's lifecycle rule",
			"key", u.Key, "transfer_id", u.Opts.TransferID, "err", err)
		return
	}
	j.records.Add(1)
}

// Ended implements s3store.Journal: it deletes the upload's record.
func (j *Journal) Ended(ctx context.Context, u s3store.PendingUpload) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	key := j.recordKey(u.UploadID)
	if _, err := j.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &j.cfg.Bucket, Key: &key}); err != nil {
		// Harmless: recovery finds no such upload and drops the record.
		j.log.DebugContext(ctx, "delete upload record", "key", u.Key, "err", err)
		return
	}
	j.records.Add(-1)
}

func (j *Journal) marker(ctx context.Context, key string, meta map[string]string) error {
	_, err := j.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &j.cfg.Bucket, Key: &key, Body: strings.NewReader(""), ContentLength: aws.Int64(0), Metadata: meta,
	})
	return err
}

// beatIfOlder writes a new heartbeat, and deletes the previous one, unless the current one is
// younger than age.
func (j *Journal) beatIfOlder(ctx context.Context, age time.Duration) error {
	j.beatMu.Lock()
	defer j.beatMu.Unlock()
	if j.beatKey != "" && time.Since(j.lastBeat) < age {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	at := time.Now()
	key := fmt.Sprintf("%s%s%020d/", j.replicaKey(j.cfg.ReplicaID), beatPrefix, at.UnixNano())
	if err := j.marker(ctx, key, map[string]string{metaHost: encode(j.host)}); err != nil {
		return err
	}
	if old := j.beatKey; old != "" {
		if _, err := j.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &j.cfg.Bucket, Key: &old}); err != nil {
			j.log.DebugContext(ctx, "delete previous heartbeat", "err", err) // the next scan of a peer ignores older beats
		}
	}
	j.beatKey, j.lastBeat = key, at
	return nil
}

// Start recovers what a previous life under the same ReplicaID left and what replicas gone left,
// before the gateway serves (bounded: S3 away delays the start by a minute at most), then every
// Heartbeat rewrites the heartbeat while uploads are in flight and scans again, until ctx ends.
func (j *Journal) Start(ctx context.Context) {
	first, cancel := context.WithTimeout(ctx, time.Minute)
	j.scan(first, true)
	cancel()
	go func() {
		t := time.NewTicker(j.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if j.records.Load() > 0 {
				if err := j.beatIfOlder(ctx, 0); err != nil {
					j.log.Warn("heartbeat not written", "err", err)
				}
			}
			j.scan(ctx, false)
		}
	}()
}

// Close removes the heartbeat when no upload of this replica is left recorded (at a clean
// shutdown every upload has ended). A record left means an upload whose abort failed: the
// heartbeat stays, goes stale, and recovery aborts the upload then.
func (j *Journal) Close(ctx context.Context) {
	if n := j.records.Load(); n > 0 {
		j.log.Warn("uploads still recorded at shutdown: recovery will abort them", "records", n)
		return
	}
	j.beatMu.Lock()
	defer j.beatMu.Unlock()
	if j.beatKey == "" {
		return // never wrote one
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := j.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &j.cfg.Bucket, Key: &j.beatKey}); err != nil {
		j.log.Warn("heartbeat not removed at shutdown", "err", err)
		return
	}
	j.beatKey = ""
}

// replica is what the journal holds for one replica.
type replica struct {
	heartbeat *time.Time // the newest heartbeat's
	beats     []string   // heartbeat keys
	records   []types.Object
	claims    []types.Object
}

// scan lists the journal and recovers the uploads of every replica gone; at start, also those
// recorded under this replica's own id (a previous life's).
func (j *Journal) scan(ctx context.Context, start bool) {
	now, replicas, err := j.list(ctx)
	if err != nil {
		j.log.Warn("upload journal not read", "err", err)
		return
	}
	for id, r := range replicas {
		own := id == j.cfg.ReplicaID
		switch {
		case own && !start:
			continue
		case own:
			if len(r.records) == 0 {
				continue
			}
			j.log.Info("recovering the uploads of this replica's previous run", "records", len(r.records))
		default:
			last := r.heartbeat
			for _, rec := range r.records { // no heartbeat left: the newest record says when it lived
				if last == nil || rec.LastModified.After(*last) {
					last = rec.LastModified
				}
			}
			if last == nil || now.Sub(*last) < j.cfg.StaleAfter {
				continue
			}
			j.log.Info("recovering the uploads of a replica gone", "gone", id, "last_seen", last, "records", len(r.records))
		}
		if j.recoverReplica(ctx, id, r) {
			for _, c := range r.claims { // left by a recovering replica that died
				if now.Sub(aws.ToTime(c.LastModified)) > j.cfg.StaleAfter {
					_ = j.drop(ctx, aws.ToString(c.Key))
				}
			}
			for _, key := range r.beats { // at start, own beats are the previous run's

				if _, err := j.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &j.cfg.Bucket, Key: &key}); err != nil {
					j.log.Warn("heartbeat of a replica gone not removed", "gone", id, "err", err)
				}
			}
		}
	}
}

// list reads the journal: S3's time and what each replica holds. S3's time is the listing's Date,
// or the newest LastModified listed when that is later: a Date has whole seconds and can lag
// (versitygw's HTTP server refreshes its Date once a second; in CI it read a second behind a
// heartbeat written before the request), while a LastModified is S3's own clock at a write that
// already happened. Either way it is no later than S3's true time, so ages read short, by up to
// a second or two: a replica is declared gone late, never early.
func (j *Journal) list(ctx context.Context) (time.Time, map[string]*replica, error) {
	now := time.Now()
	var newest time.Time
	replicas := map[string]*replica{}
	pages := s3.NewListObjectsV2Paginator(j.api, &s3.ListObjectsV2Input{Bucket: &j.cfg.Bucket, Prefix: &j.cfg.Prefix})
	for first := true; pages.HasMorePages(); first = false {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return now, nil, err
		}
		if t, ok := awsmiddleware.GetServerTime(page.ResultMetadata); ok && first {
			now = t
		}
		for _, o := range page.Contents {
			if lm := aws.ToTime(o.LastModified); lm.After(newest) {
				newest = lm
			}
			id, rest, ok := strings.Cut(strings.TrimPrefix(aws.ToString(o.Key), j.cfg.Prefix), "/")
			if !ok || id == "" {
				continue
			}
			r := replicas[id]
			if r == nil {
				r = &replica{}
				replicas[id] = r
			}
			if strings.Count(rest, "/") != 1 || !strings.HasSuffix(rest, "/") {
				continue
			}
			switch {
			case strings.HasPrefix(rest, beatPrefix):
				r.beats = append(r.beats, aws.ToString(o.Key))
				if r.heartbeat == nil || o.LastModified.After(*r.heartbeat) {
					r.heartbeat = o.LastModified
				}
			case strings.HasPrefix(rest, uploadPrefix):
				r.records = append(r.records, o)
			case strings.HasPrefix(rest, claimPrefix):
				r.claims = append(r.claims, o)
			}
		}
	}
	if newest.After(now) {
		now = newest
	}
	return now, replicas, nil
}

// recoverReplica aborts the uploads recorded for a replica gone and deletes their records;
// true when none is left.
func (j *Journal) recoverReplica(ctx context.Context, id string, r *replica) bool {
	pending := map[string]map[string]types.MultipartUpload{} // bucket -> upload id -> upload
	clean := true
	for _, rec := range r.records {
		err := j.recoverRecord(ctx, id, aws.ToString(rec.Key), pending)
		switch {
		case errors.Is(err, errClaimed):
			clean = false
		case err != nil:
			j.log.Warn("upload of a replica gone not recovered; will retry", "gone", id, "record", aws.ToString(rec.Key), "err", err)
			clean = false
		}
	}
	return clean
}

// claim takes the recovery of one upload for this replica; errClaimed when another has it.
func (j *Journal) claim(ctx context.Context, key string) error {
	_, err := j.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &j.cfg.Bucket, Key: &key, Body: strings.NewReader(""), ContentLength: aws.Int64(0),
		IfNoneMatch: aws.String("*"), Metadata: map[string]string{"replica": j.cfg.ReplicaID},
	})
	if !preconditionFailed(err) {
		return err
	}
	// Claimed already. A claimer that died leaves its claim: take it over once it is stale.
	head, herr := j.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &j.cfg.Bucket, Key: &key})
	if herr == nil && time.Since(aws.ToTime(head.LastModified)) > j.cfg.StaleAfter {
		_ = j.drop(ctx, key) // the next scan claims it again
	}
	return errClaimed
}

func (j *Journal) recoverRecord(ctx context.Context, gone, key string, pending map[string]map[string]types.MultipartUpload) error {
	escaped := strings.TrimSuffix(strings.TrimPrefix(key, j.replicaKey(gone)+uploadPrefix), "/")
	uploadID, err := url.PathUnescape(escaped)
	if err != nil {
		return j.drop(ctx, key)
	}
	claim := j.replicaKey(gone) + claimPrefix + escaped + "/"
	if err := j.claim(ctx, claim); err != nil {
		return err
	}
	defer j.drop(context.WithoutCancel(ctx), claim) //nolint:errcheck // a claim left goes stale
	head, err := j.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &j.cfg.Bucket, Key: &key})
	if err != nil {
		if notFound(err) { // another replica recovered it meanwhile
			return nil
		}
		return err
	}
	meta := func(k string) string { return decode(head.Metadata[k]) }
	bucket := meta(metaBucket)
	if bucket == "" {
		return j.drop(ctx, key)
	}
	ups, ok := pending[bucket]
	if !ok {
		if ups, err = j.uploads(ctx, bucket); err != nil {
			return err
		}
		pending[bucket] = ups
	}
	up, ok := ups[uploadID]
	if !ok { // completed or aborted after all; only the record was left
		return j.drop(ctx, key)
	}
	objKey := aws.ToString(up.Key)
	var size int64
	if parts, err := j.api.ListParts(ctx, &s3.ListPartsInput{Bucket: &bucket, Key: &objKey, UploadId: &uploadID}); err == nil {
		for _, p := range parts.Parts {
			size += aws.ToInt64(p.Size)
		}
	}
	_, err = j.api.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: &objKey, UploadId: &uploadID})
	if notFound(err) { // another replica took it first
		return j.drop(ctx, key)
	}
	if err != nil {
		return err
	}
	// Parts finishing on the server can bring an upload back; make sure it stays gone.
	if err := s3store.AbortMultipart(ctx, j.api, bucket, objKey, uploadID); err != nil {
		j.log.Warn("aborted upload may linger", "bucket", bucket, "key", objKey, "err", err)
	}
	j.recovered.Add(1)
	reason := fmt.Sprintf("gateway replica %s stopped during the upload (crash or kill); its multipart upload was aborted by replica %s", gone, j.cfg.ReplicaID)
	j.log.Warn("aborted the upload of a replica gone", "gone", gone, "bucket", bucket, "key", objKey, "user", meta(metaUser),
		"transfer_id", meta(metaTransferID), "bytes", size)
	if j.cfg.Failed != nil {
		started, _ := time.Parse(time.RFC3339Nano, meta(metaStarted))
		j.cfg.Failed(event.GatewayDetail{
			User: meta(metaUser), Protocol: meta(metaProtocol), SessionID: meta(metaSession), ClientAddress: meta(metaClient),
			Bucket: bucket, Key: objKey, Bytes: size, TransferID: meta(metaTransferID), StartTime: started,
			FailureReason: reason,
		})
	}
	return j.drop(ctx, key)
}

// uploads lists a bucket's multipart uploads in progress by id.
func (j *Journal) uploads(ctx context.Context, bucket string) (map[string]types.MultipartUpload, error) {
	out := map[string]types.MultipartUpload{}
	in := &s3.ListMultipartUploadsInput{Bucket: &bucket}
	for {
		page, err := j.api.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, err
		}
		for _, u := range page.Uploads {
			out[aws.ToString(u.UploadId)] = u
		}
		if !aws.ToBool(page.IsTruncated) {
			return out, nil
		}
		in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	}
}

func (j *Journal) drop(ctx context.Context, key string) error {
	_, err := j.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &j.cfg.Bucket, Key: &key})
	return err
}

func preconditionFailed(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && (api.ErrorCode() == "PreconditionFailed" || api.ErrorCode() == "ConditionalRequestConflict")
}

func notFound(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchUpload", "NoSuchKey", "NotFound":
			return true
		}
	}
	return false
}

// encode makes a metadata value safe as an HTTP header (RFC 2047 for non-ASCII), as S3 returns
// such values; decode reverses it.
func encode(v string) string {
	for _, r := range v {
		if r < 0x20 || r > 0x7e {
			return mime.QEncoding.Encode("utf-8", v)
		}
	}
	return v
}

func decode(v string) string {
	if d, err := new(mime.WordDecoder).DecodeHeader(v); err == nil {
		return d
	}
	return v
}
