package s3store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/transfermem"
	"github.com/ferrygw/ferry/gateway/internal/vpath"
)

// Limits from S3.
const (
	minPartSize  = 5 << 20
	maxPartSize  = 5 << 30
	maxParts     = 10000
	maxCopySize  = 5 << 30 // largest object CopyObject copies in one call
	copyPartSize = 512 << 20
)

// Config tunes a Store. Zero values take the defaults.
type Config struct {
	Bucket string // default bucket, for homes that name none
	// PartSize is the multipart part size and the largest object written with one PutObject
	// (default 5 MiB, at least 5 MiB). An upload holds at most (Concurrency+1)*PartSize, from
	// Memory. Parts double every 1000 (S3 allows 10,000 per object), so an object beyond ~75 GiB
	// needs parts of 80 MiB and more, which a user's share of Memory must hold.
	PartSize    int64
	Concurrency int // parts in flight per upload and keys copied at once per rename (default 4)
	// MaxRenameKeys is the most keys a directory rename moves (default 1000); a bigger
	// directory is refused with storage.ErrTooLarge before anything moves.
	MaxRenameKeys int
	// ReadBuffer is how many recently read bytes an open file keeps so reads that arrive
	// slightly out of order need no new request (default 4 MiB).
	ReadBuffer int
	// ListPageSize is the keys asked for per ListObjectsV2 page (default and maximum 1000).
	ListPageSize int32
	// Memory is the transfer memory that part buffers and read-ahead rings come from, each
	// user's through their share (default: a budget of the package transfermem defaults).
	Memory *transfermem.Budget
	Logger *slog.Logger // default discards
	// Journal, when set, is told of every multipart upload from its start to its end, so the
	// ones a crashed process leaves behind can be found and aborted (package recovery).
	Journal Journal
}

// Journal records the multipart uploads in flight. Its methods are best effort and must not
// fail an upload (they log); Started runs after CreateMultipartUpload, Ended after the upload
// was completed or aborted.
type Journal interface {
	Started(ctx context.Context, u PendingUpload)
	Ended(ctx context.Context, u PendingUpload)
}

// PendingUpload is a multipart upload in flight and who it is for.
type PendingUpload struct {
	Bucket, Key, UploadID string
	Opts                  storage.CreateOptions
	Started               time.Time
}

// Store is the S3 storage for all homes of one gateway.
type Store struct {
	api API
	cfg Config
	log *slog.Logger

	clock atomic.Int64 // last attribute marker stamp (see stamp)

	// copyLimit and copyPart are maxCopySize and copyPartSize; tests lower them.
	copyLimit, copyPart int64
	// beforeCopy, when set (tests), runs in a rename between the destination's lookup and the
	// first copy: where another client's write races the rename.
	beforeCopy func(dst string)
}

// DefaultPartSize is S3's minimum part size, as the SDK's transfer manager uses: an upload
// holds up to (Concurrency+1) parts of transfer memory, and a user's share of it limits how
// many large uploads they run at once.
const DefaultPartSize = 5 << 20

// New returns a Store over api.
func New(api API, cfg Config) (*Store, error) {
	if api == nil {
		return nil, errors.New("s3store: nil S3 client")
	}
	var errs []error
	if cfg.Bucket == "" {
		errs = append(errs, errors.New("s3store: no default bucket"))
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < minPartSize || cfg.PartSize > maxPartSize {
		errs = append(errs, fmt.Errorf("s3store: part size %d outside S3's limits [5 MiB, 5 GiB]", cfg.PartSize))
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 4
	}
	if cfg.MaxRenameKeys == 0 {
		cfg.MaxRenameKeys = 1000
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = 4 << 20
	}
	if cfg.ListPageSize == 0 {
		cfg.ListPageSize = 1000
	}
	if cfg.Concurrency < 0 || cfg.MaxRenameKeys < 0 || cfg.ReadBuffer < 0 ||
		cfg.ListPageSize < 0 || cfg.ListPageSize > 1000 {
		errs = append(errs, errors.New("s3store: negative limit or list page size over 1000"))
	}
	if cfg.Memory == nil {
		mem, err := transfermem.New(transfermem.Config{})
		if err != nil {
			errs = append(errs, fmt.Errorf("s3store: %w", err))
		}
		cfg.Memory = mem
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{api: api, cfg: cfg, log: log.With("component", "s3store"),
		copyLimit: maxCopySize, copyPart: copyPartSize}, nil
}

// memory is the transfer memory of user ("" = not a user's: the whole budget).
func (s *Store) memory(user string) *transfermem.Budget {
	if user == "" {
		return s.cfg.Memory
	}
	return s.cfg.Memory.Share(user)
}

// Home returns the view of one home: bucket ("" = the default) and key prefix ("" = the bucket
// root). An invalid prefix gives a view whose every call fails with storage.ErrInvalidPath.
func (s *Store) Home(bucket, prefix string) storage.FS { return s.UserHome("", bucket, prefix) }

// UserHome is Home for a user: the transfers through it take the user's share of the transfer
// memory (uploads already name their user in storage.CreateOptions; downloads need this).
func (s *Store) UserHome(user, bucket, prefix string) storage.FS {
	if bucket == "" {
		bucket = s.cfg.Bucket
	}
	home, err := vpath.Home(prefix)
	return &homeFS{s: s, bucket: bucket, home: home, err: err, user: user}
}

// homeFS is one home. It also implements storage.Setstater, storage.Hasher and
// storage.SpaceReporter.
type homeFS struct {
	s      *Store
	bucket string
	home   string
	err    error
	user   string // whose share of the transfer memory downloads take ("" = none in particular)
}

var (
	_ storage.FS            = (*homeFS)(nil)
	_ storage.Setstater     = (*homeFS)(nil)
	_ storage.Hasher        = (*homeFS)(nil)
	_ storage.SpaceReporter = (*homeFS)(nil)

	_ storage.NoReplaceRenamer = (*homeFS)(nil)
	_ storage.WriterSetstater  = (*homeFS)(nil)
)

// PartSize is the configured part size (the storage contract suite sizes its files by it).
func (h *homeFS) PartSize() int64 { return h.s.cfg.PartSize }

// MaxRenameKeys is the directory rename limit.
func (h *homeFS) MaxRenameKeys() int { return h.s.cfg.MaxRenameKeys }

// HomePrefix is the home's key prefix.
func (h *homeFS) HomePrefix() string { return h.home }

// target is a client path resolved in the home.
type target struct {
	name   string // clean virtual path
	key    string // object key of a file
	dirKey string // prefix of a directory (and its marker's key)
}

func (t target) root() bool   { return t.name == "/" }
func (t target) base() string { return path.Base(t.name) }

func (h *homeFS) resolve(op, name string) (target, error) {
	if h.err != nil {
		return target{}, &fs.PathError{Op: op, Path: name, Err: h.err}
	}
	clean, err := vpath.Clean(name)
	if err != nil {
		return target{}, &fs.PathError{Op: op, Path: name, Err: err}
	}
	if reservedName(clean) {
		return target{}, &fs.PathError{Op: op, Path: clean, Err: errReserved}
	}
	key, err := vpath.Key(h.home, clean)
	if err != nil {
		return target{}, &fs.PathError{Op: op, Path: clean, Err: err}
	}
	dirKey, err := vpath.DirKey(h.home, clean)
	if err != nil {
		return target{}, &fs.PathError{Op: op, Path: clean, Err: err}
	}
	return target{name: clean, key: key, dirKey: dirKey}, nil
}

func (h *homeFS) head(ctx context.Context, key string) (*s3.HeadObjectOutput, error) {
	return h.s.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &h.bucket, Key: &key})
}

// dirExists reports whether anything (a marker or any key) lives under the prefix.
func (h *homeFS) dirExists(ctx context.Context, t target) (bool, error) {
	if t.root() {
		return true, nil
	}
	out, err := h.s.api.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket: &h.bucket, Prefix: &t.dirKey, MaxKeys: aws.Int32(1),
	})
	if err != nil {
		return false, err
	}
	return len(out.Contents) > 0, nil
}

// Stat describes a file (HEAD, and its attribute markers) or a directory (marker or any key
// under its prefix).
func (h *homeFS) Stat(ctx context.Context, name string) (*storage.Entry, error) {
	t, err := h.resolve("stat", name)
	if err != nil {
		return nil, err
	}
	e, _, err := h.lookupWith(ctx, t, true)
	return e, pathErr("stat", t.name, err)
}

// lookup stats t without reading attribute markers (callers that need no time or mode),
// returning the HEAD output too for files.
func (h *homeFS) lookup(ctx context.Context, t target) (*storage.Entry, *s3.HeadObjectOutput, error) {
	return h.lookupWith(ctx, t, false)
}

func (h *homeFS) lookupWith(ctx context.Context, t target, withMarks bool) (*storage.Entry, *s3.HeadObjectOutput, error) {
	if t.root() {
		return &storage.Entry{Name: "/", Dir: true}, nil, nil
	}
	out, err := h.head(ctx, t.key)
	if err == nil {
		return h.fileEntry(ctx, t, out, withMarks)
	}
	if !isNotFound(err) {
		return nil, nil, err
	}
	ok, derr := h.dirExists(ctx, t)
	if derr != nil {
		return nil, nil, derr
	}
	if !ok {
		return nil, nil, err // the HEAD's not-found
	}
	// No time: a listing cannot give a sub-directory one either (S3 has prefixes, not
	// folders), and both views must agree. Entry.Info reports the Unix epoch.
	return &storage.Entry{Name: t.base(), Dir: true}, nil, nil
}

// requireDir checks that t is an existing directory.
func (h *homeFS) requireDir(ctx context.Context, t target) error {
	ok, err := h.dirExists(ctx, t)
	if err != nil || ok {
		return err
	}
	if _, herr := h.head(ctx, t.key); herr == nil {
		return storage.ErrNotDir
	} else if !isNotFound(herr) {
		return herr
	}
	return fs.ErrNotExist
}

func (h *homeFS) parent(op string, t target) (target, error) {
	return h.resolve(op, path.Dir(t.name))
}

// List streams dir's children page by page, merging each page's files and sub-directories in
// key order. File entries carry S3's size and LastModified (to the second, as a HEAD shows it)
// or, when the directory holds attribute markers, what those record: the markers are read in
// the same key order and merged in (no per-entry request; see the package doc).
func (h *homeFS) List(ctx context.Context, dir string, fn func(*storage.Entry) error) error {
	t, err := h.resolve("list", dir)
	if err != nil {
		return err
	}
	prefix := t.dirKey
	pages := s3.NewListObjectsV2Paginator(h.s.api, &s3.ListObjectsV2Input{
		Bucket: &h.bucket, Prefix: &prefix, Delimiter: aws.String("/"),
		MaxKeys: aws.Int32(h.s.cfg.ListPageSize),
	})
	found := t.root()
	j := &listJoin{h: h, dirKey: prefix, fn: fn}
	defer j.close()
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return pathErr("list", t.name, err)
		}
		if len(page.Contents) > 0 || len(page.CommonPrefixes) > 0 {
			found = true
		}
		if err := j.page(ctx, prefix, page, pages.HasMorePages()); err != nil {
			return j.wrap(t.name, err)
		}
	}
	if err := j.finish(ctx); err != nil {
		return j.wrap(t.name, err)
	}
	if found {
		return nil
	}
	if _, err := h.head(ctx, t.key); err == nil {
		return pathErr("list", t.name, storage.ErrNotDir)
	} else if !isNotFound(err) {
		return pathErr("list", t.name, err)
	}
	return pathErr("list", t.name, fs.ErrNotExist)
}

// Mkdir writes the directory's marker. The parent must exist.
func (h *homeFS) Mkdir(ctx context.Context, name string) error {
	t, err := h.resolve("mkdir", name)
	if err != nil {
		return err
	}
	if t.root() {
		return pathErr("mkdir", t.name, fs.ErrExist)
	}
	p, err := h.parent("mkdir", t)
	if err != nil {
		return err
	}
	if err := h.requireDir(ctx, p); err != nil {
		return pathErr("mkdir", t.name, err)
	}
	if _, _, err := h.lookup(ctx, t); err == nil {
		return pathErr("mkdir", t.name, fs.ErrExist)
	} else if !isNotFound(err) {
		return pathErr("mkdir", t.name, err)
	}
	_, err = h.s.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &h.bucket, Key: &t.dirKey, Body: strings.NewReader(""), ContentLength: aws.Int64(0),
	})
	return pathErr("mkdir", t.name, err)
}

// Rmdir removes an empty directory's marker. Attribute markers left by files deleted behind
// Ferry's back (by S3 clients) do not make a directory non-empty: they are removed with it.
func (h *homeFS) Rmdir(ctx context.Context, name string) error {
	t, err := h.resolve("rmdir", name)
	if err != nil {
		return err
	}
	if t.root() {
		return pathErr("rmdir", t.name, fs.ErrPermission)
	}
	var (
		stale []string
		any   bool
	)
	marks := markDir(t.dirKey)
	pages := s3.NewListObjectsV2Paginator(h.s.api, &s3.ListObjectsV2Input{
		Bucket: &h.bucket, Prefix: &t.dirKey, MaxKeys: aws.Int32(h.s.cfg.ListPageSize),
	})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return pathErr("rmdir", t.name, err)
		}
		for _, o := range out.Contents {
			any = true
			switch k := aws.ToString(o.Key); {
			case k == t.dirKey:
			case strings.HasPrefix(k, marks):
				stale = append(stale, k)
			default:
				return pathErr("rmdir", t.name, storage.ErrNotEmpty)
			}
		}
	}
	if !any {
		if _, err := h.head(ctx, t.key); err == nil {
			return pathErr("rmdir", t.name, storage.ErrNotDir)
		}
		return pathErr("rmdir", t.name, fs.ErrNotExist)
	}
	if err := h.deleteKeys(ctx, stale); err != nil {
		return pathErr("rmdir", t.name, err)
	}
	_, err = h.s.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &h.bucket, Key: &t.dirKey})
	return pathErr("rmdir", t.name, err)
}

// Remove deletes a file.
func (h *homeFS) Remove(ctx context.Context, name string) error {
	t, err := h.resolve("remove", name)
	if err != nil {
		return err
	}
	if _, err := h.requireFile(ctx, t); err != nil {
		return pathErr("remove", t.name, err)
	}
	if _, err = h.s.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &h.bucket, Key: &t.key}); err != nil {
		return pathErr("remove", t.name, err)
	}
	h.dropAllMarks(ctx, t.key)
	return nil
}

// requireFile checks that t is an existing file and returns its HEAD: ErrIsDir for a
// directory, else not-found.
func (h *homeFS) requireFile(ctx context.Context, t target) (*s3.HeadObjectOutput, error) {
	if t.root() {
		return nil, storage.ErrIsDir
	}
	out, err := h.head(ctx, t.key)
	if err == nil || !isNotFound(err) {
		return out, err
	}
	if ok, derr := h.dirExists(ctx, t); derr != nil {
		return nil, derr
	} else if ok {
		return nil, storage.ErrIsDir
	}
	return nil, err
}

// deleteKeys deletes keys with at most Concurrency calls in flight; the first error is returned
// after all calls end.
func (h *homeFS) deleteKeys(ctx context.Context, keys []string) error {
	return h.s.each(ctx, len(keys), func(ctx context.Context, i int) error {
		_, err := h.s.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &h.bucket, Key: &keys[i]})
		return err
	})
}

// each runs fn(0..n-1) with at most Concurrency at once and returns the first error; after an
// error no new call starts.
func (s *Store) each(ctx context.Context, n int, fn func(context.Context, int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, s.cfg.Concurrency)
	)
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return first != nil }
	for i := range n {
		if failed() || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// listAll returns every object under prefix, or ErrTooLarge past limit keys.
func (h *homeFS) listAll(ctx context.Context, prefix string, limit int) ([]types.Object, error) {
	var objs []types.Object
	pages := s3.NewListObjectsV2Paginator(h.s.api, &s3.ListObjectsV2Input{
		Bucket: &h.bucket, Prefix: &prefix, MaxKeys: aws.Int32(h.s.cfg.ListPageSize),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		objs = append(objs, page.Contents...)
		if len(objs) > limit {
			return nil, fmt.Errorf("%w: more than %d keys", storage.ErrTooLarge, limit)
		}
	}
	return objs, nil
}
