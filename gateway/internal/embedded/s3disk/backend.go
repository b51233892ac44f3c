// Package s3disk is a gofakes3 backend that keeps buckets, objects and multipart uploads in a
// local directory, for the embedded S3-compatible endpoint of `ferry serve`.
//
// Layout under the data directory:
//
//	s3.lock                                  held (flock) while a Backend is open
//	tmp/                                     bodies being written; emptied at open
//	buckets/<bucket>/bucket.json             creation time
//	buckets/<bucket>/objects/<hh>/<hash>.json       sidecar: key, size, etag, mtime, metadata, tags
//	buckets/<bucket>/objects/<hh>/<hash>.<gen>.data the body named by the sidecar
//	uploads/<id>/upload.json                 a multipart upload: bucket, key, metadata, tags
//	uploads/<id>/part-<nnnnn>-<md5>          its parts
//
// <hash> is the SHA-256 of the object key, so no key (`../x`, `/abs`, 4 KiB of slashes) names a
// path of its own, and "a" and "a/b" coexist. A body is streamed to tmp/, fsynced, and renamed
// to a fresh <gen> name; the sidecar is then swapped in with one rename, so a reader sees the old
// object or the new one, never a partial one, and a failed write leaves nothing. Those renames
// happen under a lock striped by key; no lock is held while a body is copied. An in-memory index
// of keys (rebuilt from the sidecars at open) serves listings in key order.
package s3disk

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// DefaultMinPartSize is S3's smallest allowed part (all but the last).
const DefaultMinPartSize = 5 << 20

// Options tune a Backend; the zero value is S3's behaviour.
type Options struct {
	// MinPartSize is the smallest part CompleteMultipartUpload accepts (all but the last);
	// 0 means DefaultMinPartSize, a negative value disables the check.
	MinPartSize int64
	// Logger receives cleanup and recovery messages; nil discards them.
	Logger *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Backend implements gofakes3.Backend and gofakes3.MultipartBackend over a directory.
type Backend struct {
	root    string
	opts    Options
	log     *slog.Logger
	lock    *os.File
	stripes [256]sync.RWMutex // per-key commit/read locks, striped by key hash
	seq     atomic.Uint64     // ObjectInfo.Seq

	mu      sync.RWMutex // guards buckets; held shared by commits so a bucket cannot vanish mid-commit
	buckets map[string]*bucket

	upMu    sync.Mutex // guards uploads
	uploads map[gofakes3.UploadID]*upload
}

var (
	_ gofakes3.Backend          = (*Backend)(nil)
	_ gofakes3.MultipartBackend = (*Backend)(nil)
)

type bucketFile struct {
	Created time.Time `json:"created"`
}

// Open opens (creating if needed) the store in dir, takes an exclusive lock on it, removes
// leftovers of interrupted writes and loads the key index.
func Open(dir string, opts Options) (*Backend, error) {
	if dir == "" {
		return nil, errors.New("s3disk: open: empty data directory")
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("s3disk: open %s: %w", dir, err)
	}
	if opts.MinPartSize == 0 {
		opts.MinPartSize = DefaultMinPartSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Backend{
		root: root, opts: opts, log: log.With("component", "s3disk"),
		buckets: map[string]*bucket{}, uploads: map[gofakes3.UploadID]*upload{},
	}
	for _, d := range []string{root, b.tmpDir(), filepath.Join(root, "buckets"), b.uploadsDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("s3disk: open: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(root, "s3.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("s3disk: open: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("s3disk: open %s: data directory in use by another process: %w", root, err)
	}
	b.lock = lock
	b.seq.Store(uint64(opts.Now().UnixNano()))
	if err := b.load(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// Close releases the directory lock. Requests in flight must have finished.
func (b *Backend) Close() error {
	if b.lock == nil {
		return nil
	}
	err := b.lock.Close() // closing drops the flock
	b.lock = nil
	return err
}

// Root is the absolute data directory.
func (b *Backend) Root() string { return b.root }

func (b *Backend) tmpDir() string     { return filepath.Join(b.root, "tmp") }
func (b *Backend) uploadsDir() string { return filepath.Join(b.root, "uploads") }
func (b *Backend) bucketDir(name string) string {
	return filepath.Join(b.root, "buckets", name)
}

// objectPaths returns the directory, sidecar path and hash prefix of key in bucket.
func (b *Backend) objectPaths(bucketName, key string) (dir, sidecar, hash string) {
	sum := sha256.Sum256([]byte(key))
	hash = hex.EncodeToString(sum[:])
	dir = filepath.Join(b.bucketDir(bucketName), "objects", hash[:2])
	return dir, filepath.Join(dir, hash+".json"), hash
}

func (b *Backend) stripe(bucketName, key string) *sync.RWMutex {
	h := fnv.New32a()
	h.Write([]byte(bucketName))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return &b.stripes[h.Sum32()%uint32(len(b.stripes))]
}

// load rebuilds the index from disk and deletes what interrupted writes left behind.
func (b *Backend) load() error {
	if err := removeContents(b.tmpDir()); err != nil {
		return fmt.Errorf("s3disk: clean tmp: %w", err)
	}
	ents, err := os.ReadDir(filepath.Join(b.root, "buckets"))
	if err != nil {
		return fmt.Errorf("s3disk: load: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || gofakes3.ValidateBucketName(e.Name()) != nil {
			continue
		}
		bk, err := b.loadBucket(e.Name())
		if err != nil {
			return err
		}
		b.buckets[e.Name()] = bk
	}
	return b.loadUploads()
}

func (b *Backend) loadBucket(name string) (*bucket, error) {
	bk := newBucket(name)
	var bf bucketFile
	if data, err := os.ReadFile(filepath.Join(b.bucketDir(name), "bucket.json")); err == nil {
		_ = json.Unmarshal(data, &bf)
	}
	bk.created = bf.Created
	objDir := filepath.Join(b.bucketDir(name), "objects")
	dirs, err := os.ReadDir(objDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("s3disk: load bucket %s: %w", name, err)
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		if err := b.loadObjectDir(bk, filepath.Join(objDir, d.Name())); err != nil {
			return nil, err
		}
	}
	bk.sortKeys()
	return bk, nil
}

func (b *Backend) loadObjectDir(bk *bucket, dir string) error {
	files, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("s3disk: load %s: %w", dir, err)
	}
	used := map[string]bool{}
	for _, f := range files {
		name := f.Name()
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		rec, err := readRecord(filepath.Join(dir, name))
		if err != nil {
			b.log.Warn("skip unreadable object sidecar", "path", filepath.Join(dir, name), "err", err)
			continue
		}
		sum := sha256.Sum256([]byte(rec.Key))
		if hex.EncodeToString(sum[:])+".json" != name {
			b.log.Warn("skip object sidecar whose key does not match its name", "path", filepath.Join(dir, name))
			continue
		}
		used[rec.Data] = true
		bk.objs[rec.Key] = rec.entry()
		bk.keys = append(bk.keys, rec.Key)
	}
	for _, f := range files {
		name := f.Name()
		if strings.HasSuffix(name, ".json") || used[name] {
			continue
		}
		// A body renamed in just before a crash, or replaced just before one.
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("s3disk: clean %s: %w", dir, err)
		}
		b.log.Info("removed unreferenced object data", "path", filepath.Join(dir, name))
	}
	return nil
}

// ListBuckets implements gofakes3.Backend.
func (b *Backend) ListBuckets() ([]gofakes3.BucketInfo, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]gofakes3.BucketInfo, 0, len(b.buckets))
	for name, bk := range b.buckets {
		out = append(out, gofakes3.BucketInfo{Name: name, CreationDate: gofakes3.NewContentTime(bk.created)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CreateBucket implements gofakes3.Backend.
func (b *Backend) CreateBucket(name string) error {
	if err := gofakes3.ValidateBucketName(name); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.buckets[name]; ok {
		return gofakes3.ResourceError(gofakes3.ErrBucketAlreadyExists, name)
	}
	dir := b.bucketDir(name)
	if err := os.MkdirAll(filepath.Join(dir, "objects"), 0o755); err != nil {
		return fmt.Errorf("s3disk: create bucket %s: %w", name, err)
	}
	bk := newBucket(name)
	bk.created = b.opts.Now().UTC()
	data, _ := json.Marshal(bucketFile{Created: bk.created})
	if err := b.writeFileAtomic(filepath.Join(dir, "bucket.json"), data); err != nil {
		return fmt.Errorf("s3disk: create bucket %s: %w", name, err)
	}
	b.buckets[name] = bk
	return nil
}

// EnsureBucket creates name unless it exists.
func (b *Backend) EnsureBucket(name string) error {
	if err := b.CreateBucket(name); err != nil && !gofakes3.HasErrorCode(err, gofakes3.ErrBucketAlreadyExists) {
		return err
	}
	return nil
}

// BucketExists implements gofakes3.Backend.
func (b *Backend) BucketExists(name string) (bool, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	_, ok := b.buckets[name]
	return ok, nil
}

func (b *Backend) bucket(name string) (*bucket, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	bk, ok := b.buckets[name]
	if !ok {
		return nil, gofakes3.BucketNotFound(name)
	}
	return bk, nil
}

// DeleteBucket implements gofakes3.Backend: only an empty bucket is deleted.
func (b *Backend) DeleteBucket(name string) error { return b.deleteBucket(name, false) }

// ForceDeleteBucket implements gofakes3.Backend: the bucket goes with everything in it.
func (b *Backend) ForceDeleteBucket(name string) error { return b.deleteBucket(name, true) }

func (b *Backend) deleteBucket(name string, force bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	bk, ok := b.buckets[name]
	if !ok {
		return gofakes3.BucketNotFound(name)
	}
	if !force && bk.len() > 0 {
		return gofakes3.ResourceError(gofakes3.ErrBucketNotEmpty, name)
	}
	b.abortBucketUploads(name)
	// Rename first so a crash never leaves half a bucket that still looks like one.
	grave := filepath.Join(b.tmpDir(), "bucket-"+name+"-"+randomHex(8))
	if err := os.Rename(b.bucketDir(name), grave); err != nil {
		return fmt.Errorf("s3disk: delete bucket %s: %w", name, err)
	}
	delete(b.buckets, name)
	if err := os.RemoveAll(grave); err != nil {
		b.log.Warn("remove deleted bucket", "bucket", name, "err", err)
	}
	return nil
}

// createTemp opens a new file in tmp/, on the same file system as the objects.
func (b *Backend) createTemp(prefix string) (*os.File, error) {
	return os.CreateTemp(b.tmpDir(), prefix+"-*")
}

// writeFileAtomic writes data to a temp file, fsyncs it and renames it over path.
func (b *Backend) writeFileAtomic(path string, data []byte) error {
	tmp, err := b.writeTemp("meta", data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func (b *Backend) writeTemp(prefix string, data []byte) (string, error) {
	f, err := b.createTemp(prefix)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func removeContents(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func randomHex(n int) string {
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(buf)
}
