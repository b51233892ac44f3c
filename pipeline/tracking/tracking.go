// Package tracking keeps the small per-file records that answer "has my file arrived?" by
// listing alone: `ferry status` lists a day's files with their state, `ferry trace` finds one
// file's records, without reading an object per file.
//
// Each step of a file's way through the pipeline is one zero-byte-ish object under the ledger
// prefix (so the lifecycle rule that expires the ledger expires them too, and no routed prefix
// ever holds them: they never trigger the pipeline):
//
//	<ledger>status/<YYYY-MM-DD>/<file id>/<kind code>,<field>=<value>,...
//	<ledger>transfer/<transfer id>/<file id>,d=<YYYY-MM-DD>
//
// The day is the UTC day the file was received, so one listing of a day's prefix returns every
// record of every file received that day, whatever day its later steps happened on. The file id
// is FileID(bucket, key, etag): one per version of an object, the same id the ledger names its
// facts with. What a listing needs travels in the key itself (values query-escaped, so ',' and
// '=' never appear in them); the body repeats the record as JSON, read only when the key had to
// be shortened (a segment of a key is at most 255 bytes on S3-compatible servers that store
// objects as files). Keys are deterministic: a duplicate
// delivery rewrites the same record.
//
// The writers are the transform and notify handlers, which already write the ledger with the
// same credentials; a record that could not be written is logged, never a failed delivery.
package tracking

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Kinds of records, in the order a file goes through them.
const (
	KindReceived  = "received"  // the transform saw the object (its route, if any)
	KindWaiting   = "waiting"   // held for a batch marker or a checksum sidecar
	KindProcessed = "processed" // outputs written
	KindRejected  = "rejected"  // quarantined
	KindCopy      = "copy"      // a copy of content already processed: nothing done
	KindNotified  = "notified"  // the notice went out
)

// Waiting reasons (Record.For).
const (
	ForMarker  = "marker"  // Record.What is the marker glob
	ForSidecar = "sidecar" // Record.What is the sidecar's key
)

var kindCode = map[string]string{
	KindReceived: "r", KindWaiting: "w", KindProcessed: "p", KindRejected: "x", KindCopy: "c", KindNotified: "n",
}

var codeKind = func() map[string]string {
	m := map[string]string{}
	for k, c := range kindCode {
		m[c] = k
	}
	return m
}()

// Record is one step of one file.
type Record struct {
	Kind   string    `json:"kind"`
	FileID string    `json:"file_id"`
	Day    string    `json:"day"`  // partition: the UTC day the file was received
	Time   time.Time `json:"time"` // when this step happened

	// received
	Bucket     string `json:"bucket,omitempty"`
	Key        string `json:"key,omitempty"`
	ETag       string `json:"etag,omitempty"`
	Size       int64  `json:"size,omitempty"`
	User       string `json:"user,omitempty"`
	Protocol   string `json:"protocol,omitempty"`
	TransferID string `json:"transfer_id,omitempty"`
	Route      string `json:"route,omitempty"` // empty on a received record: no route takes it
	Dataset    string `json:"dataset,omitempty"`
	Role       string `json:"role,omitempty"` // "marker" or "sidecar" when the object is one

	// waiting
	For  string `json:"for,omitempty"`  // ForMarker or ForSidecar
	What string `json:"what,omitempty"` // the marker glob or the sidecar key

	// processed, rejected, notified
	Outputs   int    `json:"outputs,omitempty"` // outputs written; for a batch marker, the files of its batch
	Records   int64  `json:"records,omitempty"`
	Line      int64  `json:"line,omitempty"`
	Batch     string `json:"batch,omitempty"`      // file id of the batch (its marker) the step belongs to
	MessageID string `json:"message_id,omitempty"` // the notification's (SNS MessageId)

	cut bool // the key had to be shortened: the body holds the whole record
}

// Roles of an object that is not a data file.
const (
	RoleMarker  = "marker"
	RoleSidecar = "sidecar"
)

// FileID names one version of an object: bucket, key and etag (unquoted). The ledger uses the
// same id for the facts of that version.
func FileID(bucket, key, etag string) string {
	sum := sha256.Sum256([]byte(bucket + "\x00" + key + "\x00" + strings.Trim(etag, `"`)))
	return hex.EncodeToString(sum[:16])
}

// Day is the partition of a file received at t.
func Day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// maxName bounds the record's part of the object key, its last segment: S3 allows 1,024 bytes
// in a key, but S3-compatible servers on a file system (versitygw, MinIO) make each segment a
// file name, which is at most 255 bytes.
const maxName = 240

// fields lists a record's key fields in a fixed order: code, then name=value pairs.
func (r Record) fields() [][2]string {
	var f [][2]string
	add := func(k, v string) {
		if v != "" {
			f = append(f, [2]string{k, v})
		}
	}
	num := func(k string, v int64) {
		if v != 0 {
			add(k, strconv.FormatInt(v, 10))
		}
	}
	add("t", r.Time.UTC().Format(timeFormat))
	add("u", r.User)
	add("pr", r.Protocol)
	num("s", r.Size)
	add("rt", r.Route)
	add("ds", r.Dataset)
	add("ro", r.Role)
	add("for", r.For)
	num("o", int64(r.Outputs))
	num("rec", r.Records)
	num("l", r.Line)
	add("bt", r.Batch)
	add("tid", r.TransferID)
	add("mid", r.MessageID)
	add("e", r.ETag)
	add("b", r.Bucket)
	// Long, user-chosen values last: they are the ones shortened.
	add("w", r.What)
	add("k", r.Key)
	return f
}

const timeFormat = "20060102T150405.000Z"

// name encodes r as the last segment of its key, shortened to maxName when needed.
func (r Record) name() (string, bool) {
	code := kindCode[r.Kind]
	var b strings.Builder
	b.WriteString(code)
	cut := false
	for _, kv := range r.fields() {
		v := url.QueryEscape(kv[1])
		room := maxName - b.Len() - len(kv[0]) - 2 - len(",cut=1")
		if len(v) > room {
			cut = true
			if room <= 0 {
				continue
			}
			v = v[:room]
			if i := strings.LastIndexByte(v, '%'); i >= len(v)-2 && i >= 0 {
				v = v[:i] // never split an escape
			}
		}
		b.WriteString("," + kv[0] + "=" + v)
	}
	if cut {
		b.WriteString(",cut=1")
	}
	return b.String(), cut
}

// Index writes and reads the records of one bucket under one ledger prefix.
type Index struct {
	bucket, prefix string
}

// New returns the index kept in bucket under the ledger prefix (e.g. ".ferry/ledger/").
func New(bucket, ledgerPrefix string) Index {
	return Index{bucket: bucket, prefix: ledgerPrefix}
}

// Bucket and Prefix say where the records live.
func (x Index) Bucket() string { return x.bucket }
func (x Index) Prefix() string { return x.prefix }

// StatusPrefix is the prefix of the records of files received on day ("" = every day).
func (x Index) StatusPrefix(day string) string {
	if day == "" {
		return x.prefix + "status/"
	}
	return x.prefix + "status/" + day + "/"
}

// Prefixes are the prefixes every record is written under (for the checks that keep them
// under the ledger's lifecycle rule and out of the routed prefixes).
func (x Index) Prefixes() []string {
	return []string{x.StatusPrefix(""), x.prefix + "transfer/"}
}

func (x Index) transferPrefix(tid string) string {
	return x.prefix + "transfer/" + url.QueryEscape(tid) + "/"
}

// Key returns the object key of r.
func (x Index) Key(r Record) string {
	n, _ := r.name()
	return x.StatusPrefix(r.Day) + r.FileID + "/" + n
}

// PutAPI is the one S3 call writing records needs; *s3.Client satisfies it.
type PutAPI interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// Writer writes records; its zero value writes nothing (a handler without an index).
type Writer struct {
	API   PutAPI
	Index Index
}

// Put writes r (Kind, FileID, Day and Time must be set). A received record with a transfer id
// also gets the transfer's pointer, so `ferry trace TRANSFER-ID` finds the object.
func (w Writer) Put(ctx context.Context, r Record) error {
	if w.API == nil {
		return nil
	}
	if _, ok := kindCode[r.Kind]; !ok || r.FileID == "" || r.Day == "" || r.Time.IsZero() {
		return fmt.Errorf("tracking: incomplete record %+v", r)
	}
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("tracking: encode: %w", err)
	}
	if err := w.put(ctx, w.Index.Key(r), body); err != nil {
		return err
	}
	if r.Kind == KindReceived && r.TransferID != "" {
		return w.put(ctx, w.Index.transferPrefix(r.TransferID)+r.FileID+",d="+r.Day, nil)
	}
	return nil
}

func (w Writer) put(ctx context.Context, key string, body []byte) error {
	_, err := w.API.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(w.Index.bucket), Key: aws.String(key), Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("tracking: put %s: %w", key, err)
	}
	return nil
}

// ErrNotRecord reports a key under the status prefix that is not a record.
var ErrNotRecord = errors.New("tracking: not a record key")

// ParseKey decodes a record from its object key. A record whose key was shortened comes back
// with Cut reporting true: its body holds the whole record.
func (x Index) ParseKey(key string) (Record, error) {
	rest, ok := strings.CutPrefix(key, x.prefix+"status/")
	if !ok {
		return Record{}, ErrNotRecord
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) != 3 {
		return Record{}, ErrNotRecord
	}
	r := Record{Day: parts[0], FileID: parts[1]}
	fields := strings.Split(parts[2], ",")
	if r.Kind, ok = codeKind[fields[0]]; !ok {
		return Record{}, ErrNotRecord
	}
	for _, f := range fields[1:] {
		k, raw, _ := strings.Cut(f, "=")
		v, err := url.QueryUnescape(raw)
		if err != nil {
			v = raw
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "t":
			r.Time, _ = time.Parse(timeFormat, v)
		case "u":
			r.User = v
		case "pr":
			r.Protocol = v
		case "s":
			r.Size = n
		case "rt":
			r.Route = v
		case "ds":
			r.Dataset = v
		case "ro":
			r.Role = v
		case "for":
			r.For = v
		case "o":
			r.Outputs = int(n)
		case "rec":
			r.Records = n
		case "l":
			r.Line = n
		case "bt":
			r.Batch = v
		case "tid":
			r.TransferID = v
		case "mid":
			r.MessageID = v
		case "e":
			r.ETag = v
		case "b":
			r.Bucket = v
		case "w":
			r.What = v
		case "k":
			r.Key = v
		case "cut":
			r.cut = true
		}
	}
	return r, nil
}

// Cut reports whether r was decoded from a shortened key (its body holds the whole record).
func (r Record) Cut() bool { return r.cut }
