package s3disk

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/johannesboyne/gofakes3"
)

// MaxUserMetadata is S3's limit on the bytes of x-amz-meta-* names and values.
const MaxUserMetadata = 2048

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Bucket  string
	Key     string
	Size    int64
	ETag    string // quoted, as S3 sends it: "<md5>" or, for multipart objects, "<md5 of part md5s>-<parts>"
	ModTime time.Time
	Meta    map[string]string // canonical header names: Content-Type, X-Amz-Meta-Name, ...
	Tags    map[string]string
	// Seq orders the writes and deletes of a key: taken under the key's lock when the change
	// is committed, increasing across restarts (it starts from the clock). Zero for reads.
	Seq uint64
}

// record is an object's sidecar file.
type record struct {
	Key     string            `json:"key"`
	Size    int64             `json:"size"`
	ETag    string            `json:"etag"` // unquoted
	ModTime time.Time         `json:"mtime"`
	Data    string            `json:"data"` // base name of the body file, beside the sidecar
	Meta    map[string]string `json:"meta,omitempty"`
	Tags    map[string]string `json:"tags,omitempty"`

	seq uint64 // set by commit
}

func (r *record) entry() indexEntry {
	return indexEntry{size: r.Size, etag: r.ETag, modTime: r.ModTime, data: r.Data}
}

func (r *record) info(bucketName string) ObjectInfo {
	return ObjectInfo{
		Bucket: bucketName, Key: r.Key, Size: r.Size, ETag: quote(r.ETag), ModTime: r.ModTime,
		Meta: r.Meta, Tags: r.Tags, Seq: r.seq,
	}
}

func readRecord(path string) (*record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return &r, nil
}

// storedHeaders are the request headers kept with an object besides x-amz-meta-*.
var storedHeaders = []string{
	"Content-Type", "Content-Disposition", "Content-Encoding", "Content-Language",
	"Cache-Control", "Expires",
}

// cleanMeta keeps from gofakes3's metadata (every X-Amz-* request header and a few others)
// what S3 stores with an object, and checks S3's size limit on user metadata.
func cleanMeta(meta map[string]string) (map[string]string, error) {
	out := map[string]string{}
	user := 0
	for k, v := range meta {
		ck := http.CanonicalHeaderKey(k)
		switch {
		case strings.HasPrefix(ck, "X-Amz-Meta-"):
			user += len(ck) - len("X-Amz-Meta-") + len(v)
			out[ck] = v
		case ck == "Content-Encoding":
			// aws-chunked describes the upload, not the object.
			var kept []string
			for _, enc := range strings.Split(v, ",") {
				if enc = strings.TrimSpace(enc); enc != "" && !strings.EqualFold(enc, "aws-chunked") {
					kept = append(kept, enc)
				}
			}
			if len(kept) > 0 {
				out[ck] = strings.Join(kept, ",")
			}
		default:
			for _, h := range storedHeaders {
				if ck == h && v != "" {
					out[ck] = v
				}
			}
		}
	}
	if user > MaxUserMetadata {
		return nil, gofakes3.ErrMetadataTooLarge
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func validKey(key string) error {
	if key == "" {
		return gofakes3.ErrorMessage(gofakes3.ErrInvalidArgument, "empty object key")
	}
	if len(key) > gofakes3.KeySizeLimit {
		return gofakes3.ResourceError(gofakes3.ErrKeyTooLong, key)
	}
	if !utf8.ValidString(key) {
		return gofakes3.ErrorMessage(gofakes3.ErrInvalidArgument, "object key is not valid UTF-8")
	}
	return nil
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// writeBody streams r into a new temp file, fsyncs it and returns its path, size and MD5.
// Exactly size bytes must come (size < 0: until EOF). On error nothing is left behind.
func (b *Backend) writeBody(prefix string, r io.Reader, size int64) (path string, n int64, sum []byte, err error) {
	f, err := b.createTemp(prefix)
	if err != nil {
		return "", 0, nil, fmt.Errorf("s3disk: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := md5.New()
	src := &readErr{r: r}
	var lim io.Reader = src
	if size >= 0 {
		lim = io.LimitReader(src, size)
	}
	buf := copyBufs.Get().(*[]byte)
	n, err = io.CopyBuffer(io.MultiWriter(f, h), lim, *buf)
	copyBufs.Put(buf)
	if src.err != nil {
		return "", n, nil, bodyError(src.err)
	}
	if err != nil {
		return "", n, nil, fmt.Errorf("s3disk: write body: %w", err)
	}
	if size >= 0 && n != size {
		return "", n, nil, gofakes3.ErrIncompleteBody
	}
	if size >= 0 {
		// Read to the end: the request's readers check digests and signatures at EOF.
		if err = expectEOF(r); err != nil {
			return "", n, nil, err
		}
	}
	if err = f.Sync(); err != nil {
		return "", n, nil, fmt.Errorf("s3disk: sync body: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", n, nil, fmt.Errorf("s3disk: close body: %w", err)
	}
	return f.Name(), n, h.Sum(nil), nil
}

// expectEOF reads r's end, failing if more data follows.
func expectEOF(r io.Reader) error {
	var one [1]byte
	for range 100 {
		n, err := r.Read(one[:])
		if n > 0 {
			return gofakes3.ErrorMessage(gofakes3.ErrIncompleteBody, "the body is longer than its declared length")
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return bodyError(err)
		}
	}
	return io.ErrNoProgress
}

// readErr remembers the error of the request body, to tell it from a local write error.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// bodyError passes S3 errors raised by the request reader (bad digest, bad signature) through
// unwrapped, as gofakes3 only recognises them by type, and reports other read failures (the
// client went away, the connection was closed) as an incomplete body: the client's doing.
func bodyError(err error) error {
	var s3err gofakes3.Error
	if errors.As(err, &s3err) {
		return s3err
	}
	return gofakes3.ErrorMessage(gofakes3.ErrIncompleteBody, "the request body ended early: "+err.Error())
}

// Put stores an object from r (exactly size bytes), checking the conditions atomically with
// the commit. Metadata is filtered as S3 stores it; X-Amz-Tagging in meta sets the tags.
func (b *Backend) Put(bucketName, key string, meta map[string]string, r io.Reader, size int64, cond *gofakes3.PutConditions) (ObjectInfo, error) {
	if err := validKey(key); err != nil {
		return ObjectInfo{}, err
	}
	bk, err := b.bucket(bucketName)
	if err != nil {
		return ObjectInfo{}, err
	}
	tags, err := tagsFromMeta(meta)
	if err != nil {
		return ObjectInfo{}, err
	}
	m, err := cleanMeta(meta)
	if err != nil {
		return ObjectInfo{}, err
	}
	tmp, n, sum, err := b.writeBody("put", r, size)
	if err != nil {
		return ObjectInfo{}, err
	}
	rec := &record{Key: key, Size: n, ETag: hex.EncodeToString(sum), Meta: m, Tags: tags}
	if err := b.commit(bk, rec, tmp, cond); err != nil {
		return ObjectInfo{}, err
	}
	return rec.info(bucketName), nil
}

// commit makes the body at tmp the object described by rec: rename the body in under a fresh
// name, then swap the sidecar, then drop the previous body. Only this step holds the key's lock.
func (b *Backend) commit(bk *bucket, rec *record, tmp string, cond *gofakes3.PutConditions) (err error) {
	dir, sidecar, hash := b.objectPaths(bk.name, rec.Key)
	rec.Data = hash + "." + randomHex(8) + ".data"
	if rec.ModTime.IsZero() {
		rec.ModTime = b.opts.Now().UTC().Truncate(time.Millisecond)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("s3disk: encode sidecar: %w", err)
	}
	metaTmp, err := b.writeTemp("meta", data)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("s3disk: write sidecar: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
			os.Remove(metaTmp)
		}
	}()

	st := b.stripe(bk.name, rec.Key)
	st.Lock()
	defer st.Unlock()
	b.mu.RLock() // the bucket cannot be deleted under us
	defer b.mu.RUnlock()
	if b.buckets[bk.name] != bk {
		return gofakes3.BucketNotFound(bk.name)
	}
	old, exists := bk.get(rec.Key)
	if err := checkConditions(cond, old, exists); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("s3disk: commit: %w", err)
	}
	final := filepath.Join(dir, rec.Data)
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("s3disk: commit: %w", err)
	}
	if err := os.Rename(metaTmp, sidecar); err != nil {
		os.Remove(final)
		return fmt.Errorf("s3disk: commit: %w", err)
	}
	bk.set(rec.Key, rec.entry())
	rec.seq = b.seq.Add(1)
	if exists && old.data != rec.Data {
		if err := os.Remove(filepath.Join(dir, old.data)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			b.log.Warn("remove replaced object data", "bucket", bk.name, "key", rec.Key, "err", err)
		}
	}
	return nil
}

func checkConditions(cond *gofakes3.PutConditions, cur indexEntry, exists bool) error {
	if cond == nil {
		return nil
	}
	if cond.IfNoneMatch != nil && exists {
		if *cond.IfNoneMatch == "*" || etagMatches(*cond.IfNoneMatch, cur.etag) {
			return gofakes3.ErrorMessage(gofakes3.ErrPreconditionFailed, "At least one of the pre-conditions you specified did not hold")
		}
	}
	if cond.IfMatch != nil && (!exists || !etagMatches(*cond.IfMatch, cur.etag)) {
		return gofakes3.ErrorMessage(gofakes3.ErrPreconditionFailed, "At least one of the pre-conditions you specified did not hold")
	}
	return nil
}

// etagMatches reports whether an If-Match / If-None-Match header value names etag (unquoted).
func etagMatches(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == "*" || strings.Trim(v, `"`) == etag {
			return true
		}
	}
	return false
}

// Stat returns an object's description without opening its body.
func (b *Backend) Stat(bucketName, key string) (ObjectInfo, error) {
	_, rec, err := b.open(bucketName, key, false)
	if err != nil {
		return ObjectInfo{}, err
	}
	return rec.info(bucketName), nil
}

// open reads key's sidecar and, if body, opens its body, under the key's lock so the pair is
// consistent; the open file stays readable after a concurrent overwrite or delete.
func (b *Backend) open(bucketName, key string, body bool) (*os.File, *record, error) {
	bk, err := b.bucket(bucketName)
	if err != nil {
		return nil, nil, err
	}
	st := b.stripe(bucketName, key)
	st.RLock()
	defer st.RUnlock()
	if _, ok := bk.get(key); !ok {
		return nil, nil, gofakes3.KeyNotFound(key)
	}
	dir, sidecar, _ := b.objectPaths(bucketName, key)
	rec, err := readRecord(sidecar)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, gofakes3.KeyNotFound(key)
		}
		return nil, nil, fmt.Errorf("s3disk: %w", err)
	}
	if !body {
		return nil, rec, nil
	}
	f, err := os.Open(filepath.Join(dir, rec.Data))
	if err != nil {
		return nil, nil, fmt.Errorf("s3disk: open body of %q: %w", key, err)
	}
	return f, rec, nil
}

// Open returns the object for GET (body true, optionally a range) or HEAD, with its description.
func (b *Backend) Open(bucketName, key string, rng *gofakes3.ObjectRangeRequest, body bool) (*gofakes3.Object, ObjectInfo, error) {
	f, rec, err := b.open(bucketName, key, body)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	obj := &gofakes3.Object{
		Name:     key,
		Metadata: headerMeta(rec),
		Size:     rec.Size,
		Hash:     etagHash(rec.ETag),
		Contents: noBody{},
	}
	if f != nil {
		r, err := rng.Range(rec.Size)
		if err != nil {
			f.Close()
			return nil, ObjectInfo{}, err
		}
		start, length := int64(0), rec.Size
		if r != nil {
			start, length = r.Start, r.Length
		}
		obj.Range = r
		obj.Contents = &fileRange{f: f, r: io.NewSectionReader(f, start, length)}
	}
	return obj, rec.info(bucketName), nil
}

// headerMeta is what GET and HEAD send as headers: the stored metadata and Last-Modified.
func headerMeta(rec *record) map[string]string {
	m := make(map[string]string, len(rec.Meta)+1)
	for k, v := range rec.Meta {
		m[k] = v
	}
	m["Last-Modified"] = rec.ModTime.UTC().Format(http.TimeFormat)
	return m
}

// etagHash is the binary form gofakes3 turns into the ETag header: the MD5, or for a multipart
// ETag the part before "-N" (the server puts the full ETag back).
func etagHash(etag string) []byte {
	h, _, _ := strings.Cut(etag, "-")
	sum, err := hex.DecodeString(h)
	if err != nil {
		return nil
	}
	return sum
}

type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }
func (noBody) Close() error             { return nil }

// fileRange is an object body: a section of an open file. WriteTo lets the HTTP server send it
// with sendfile.
type fileRange struct {
	f *os.File
	r *io.SectionReader
}

func (fr *fileRange) Read(p []byte) (int, error) { return fr.r.Read(p) }
func (fr *fileRange) Close() error               { return fr.f.Close() }
func (fr *fileRange) WriteTo(w io.Writer) (int64, error) {
	off, _ := fr.r.Seek(0, io.SeekCurrent)
	_, base, n := fr.r.Outer()
	if _, err := fr.f.Seek(base+off, io.SeekStart); err != nil {
		return 0, err
	}
	written, err := io.Copy(w, io.LimitReader(fr.f, n-off))
	fr.r.Seek(off+written, io.SeekStart)
	return written, err
}

// Delete removes key; existed reports whether there was an object to remove.
func (b *Backend) Delete(bucketName, key string) (info ObjectInfo, existed bool, err error) {
	bk, err := b.bucket(bucketName)
	if err != nil {
		return ObjectInfo{}, false, err
	}
	st := b.stripe(bucketName, key)
	st.Lock()
	defer st.Unlock()
	cur, ok := bk.get(key)
	if !ok {
		return ObjectInfo{Bucket: bucketName, Key: key}, false, nil
	}
	dir, sidecar, _ := b.objectPaths(bucketName, key)
	if err := os.Remove(sidecar); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return ObjectInfo{}, false, fmt.Errorf("s3disk: delete %q: %w", key, err)
	}
	bk.remove(key)
	seq := b.seq.Add(1)
	if err := os.Remove(filepath.Join(dir, cur.data)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		b.log.Warn("remove deleted object data", "bucket", bucketName, "key", key, "err", err)
	}
	return ObjectInfo{Bucket: bucketName, Key: key, Size: cur.size, ETag: quote(cur.etag), ModTime: cur.modTime, Seq: seq}, true, nil
}

// CopyOptions say what a copy takes from the request instead of the source.
type CopyOptions struct {
	ReplaceMeta bool              // x-amz-metadata-directive: REPLACE
	Meta        map[string]string // the request's metadata headers
	ReplaceTags bool              // x-amz-tagging-directive: REPLACE
	Tags        map[string]string
	// Cond is the destination's If-Match / If-None-Match, checked atomically with the commit.
	Cond *gofakes3.PutConditions
}

// Copy copies an object. The body is hard-linked when the file system allows (bodies are never
// modified in place), else streamed; the destination keeps the source's ETag either way.
func (b *Backend) Copy(srcBucket, srcKey, dstBucket, dstKey string, o CopyOptions) (ObjectInfo, error) {
	if err := validKey(dstKey); err != nil {
		return ObjectInfo{}, err
	}
	if srcBucket == dstBucket && srcKey == dstKey && !o.ReplaceMeta && !o.ReplaceTags {
		return ObjectInfo{}, errCopyToItself()
	}
	dst, err := b.bucket(dstBucket)
	if err != nil {
		return ObjectInfo{}, err
	}
	f, rec, err := b.open(srcBucket, srcKey, true)
	if err != nil {
		return ObjectInfo{}, err
	}
	defer f.Close()
	tmp, err := b.linkOrCopy(f, rec)
	if err != nil {
		return ObjectInfo{}, err
	}
	out := &record{Key: dstKey, Size: rec.Size, ETag: rec.ETag, Meta: rec.Meta, Tags: rec.Tags}
	if o.ReplaceMeta {
		if out.Meta, err = cleanMeta(o.Meta); err != nil {
			os.Remove(tmp)
			return ObjectInfo{}, err
		}
	}
	if o.ReplaceTags {
		out.Tags = o.Tags
	}
	if err := b.commit(dst, out, tmp, o.Cond); err != nil {
		return ObjectInfo{}, err
	}
	return out.info(dstBucket), nil
}

// linkOrCopy puts a copy of the open body f into tmp/.
func (b *Backend) linkOrCopy(f *os.File, rec *record) (string, error) {
	tmp := filepath.Join(b.tmpDir(), "copy-"+randomHex(12))
	if err := os.Link(f.Name(), tmp); err == nil {
		return tmp, nil
	}
	// The source was replaced since it was opened, or links are not supported: copy the
	// bytes of the file we hold open.
	path, _, _, err := b.writeBody("copy", io.NewSectionReader(f, 0, rec.Size), rec.Size)
	return path, err
}
