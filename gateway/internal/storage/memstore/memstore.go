// Package memstore is an in-memory storage.FS: a map of virtual path to bytes with explicit and
// implied directories (as on S3, a file's parents exist while it does). It passes the same
// contract suite as the S3 store (storagetest): paths go through the same jail (vpath), parents
// must exist, uploads appear only at Close, Abort or a cancelled context leaves nothing. It is
// used for fast protocol tests and as the "serve from memory" ceiling in benchmarks.
package memstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/vpath"
)

// FS is an in-memory storage.FS. The zero value is not usable; call New.
type FS struct {
	mu      sync.Mutex
	files   map[string]*file // clean absolute path -> content
	dirs    map[string]*dir  // explicit directories (Mkdir); "/" is implied
	pending int              // uploads created and neither committed nor aborted
	now     func() time.Time
}

type file struct {
	data    []byte // never mutated once stored: readers share it
	modTime time.Time
	mode    fs.FileMode
	sha     string
	opts    storage.CreateOptions
}

type dir struct {
	modTime time.Time
	mode    fs.FileMode
}

var (
	_ storage.FS               = (*FS)(nil)
	_ storage.Setstater        = (*FS)(nil)
	_ storage.Hasher           = (*FS)(nil)
	_ storage.NoReplaceRenamer = (*FS)(nil)
	_ storage.WriterSetstater  = (*FS)(nil)
)

// New returns an empty store.
func New() *FS {
	return &FS{files: map[string]*file{}, dirs: map[string]*dir{}, now: time.Now}
}

// clean maps a client path to its canonical form ("/a/b") with the production jail: ".."
// cannot climb above "/" and unrepresentable names are ErrInvalidPath.
func clean(op, name string) (string, error) {
	p, err := vpath.Clean(name)
	if err != nil {
		return "", &fs.PathError{Op: op, Path: name, Err: err}
	}
	return p, nil
}

// parentExistsLocked reports whether p's parent directory exists (fs.ErrNotExist or
// ErrNotDir otherwise).
func (m *FS) parentErrLocked(p string) error {
	if m.parentIsFileLocked(p) {
		return storage.ErrNotDir
	}
	if !m.isDirLocked(path.Dir(p)) {
		return fs.ErrNotExist
	}
	return nil
}

// isDirLocked reports whether p is the root, an explicit directory or the parent of something.
func (m *FS) isDirLocked(p string) bool {
	if p == "/" {
		return true
	}
	if _, ok := m.dirs[p]; ok {
		return true
	}
	prefix := p + "/"
	for k := range m.files {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	for k := range m.dirs {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// parentIsFileLocked reports whether some ancestor of p is a file (p cannot then exist).
func (m *FS) parentIsFileLocked(p string) bool {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if _, ok := m.files[d]; ok {
			return true
		}
	}
	return false
}

func (m *FS) entryLocked(p string) (*storage.Entry, bool) {
	if f, ok := m.files[p]; ok {
		return &storage.Entry{Name: path.Base(p), Size: int64(len(f.data)), ModTime: f.modTime, Mode: f.mode, SHA256: f.sha}, true
	}
	if m.isDirLocked(p) {
		e := &storage.Entry{Name: path.Base(p), Dir: true}
		if d, ok := m.dirs[p]; ok {
			e.ModTime, e.Mode = d.modTime, d.mode
		}
		return e, true
	}
	return nil, false
}

// Stat implements storage.FS.
func (m *FS) Stat(_ context.Context, name string) (*storage.Entry, error) {
	p, err := clean("stat", name)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entryLocked(p)
	if !ok {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return e, nil
}

// List implements storage.FS. Entries come sorted by name; fn runs without the lock held.
func (m *FS) List(ctx context.Context, dirName string, fn func(*storage.Entry) error) error {
	p, err := clean("list", dirName)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if _, isFile := m.files[p]; isFile {
		m.mu.Unlock()
		return &fs.PathError{Op: "list", Path: dirName, Err: storage.ErrNotDir}
	}
	if !m.isDirLocked(p) {
		m.mu.Unlock()
		return &fs.PathError{Op: "list", Path: dirName, Err: fs.ErrNotExist}
	}
	prefix := strings.TrimSuffix(p, "/") + "/"
	children := map[string]bool{}
	collect := func(k string) {
		if rest, ok := strings.CutPrefix(k, prefix); ok && rest != "" {
			child, _, _ := strings.Cut(rest, "/")
			children[child] = true
		}
	}
	for k := range m.files {
		collect(k)
	}
	for k := range m.dirs {
		collect(k)
	}
	names := make([]string, 0, len(children))
	for n := range children {
		names = append(names, n)
	}
	sort.Strings(names)
	entries := make([]*storage.Entry, 0, len(names))
	for _, n := range names {
		if e, ok := m.entryLocked(prefix + n); ok {
			entries = append(entries, e)
		}
	}
	m.mu.Unlock()
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// Open implements storage.FS.
func (m *FS) Open(_ context.Context, name string) (storage.Reader, error) {
	p, err := clean("open", name)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.files[p]; ok {
		return &reader{r: bytes.NewReader(f.data), size: int64(len(f.data))}, nil
	}
	if m.isDirLocked(p) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: storage.ErrIsDir}
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// reader serves one immutable byte slice; after Close every call fails with fs.ErrClosed.
type reader struct {
	mu     sync.Mutex // bytes.Reader's Read/Seek share a position
	r      *bytes.Reader
	size   int64
	closed atomic.Bool
}

func (r *reader) Size() int64 { return r.size }

func (r *reader) Read(p []byte) (int, error) {
	if r.closed.Load() {
		return 0, fs.ErrClosed
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r.Read(p)
}

func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if r.closed.Load() {
		return 0, fs.ErrClosed
	}
	return r.r.ReadAt(p, off) // bytes.Reader.ReadAt is safe for concurrent use
}

func (r *reader) Seek(off int64, whence int) (int64, error) {
	if r.closed.Load() {
		return 0, fs.ErrClosed
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r.Seek(off, whence)
}

func (r *reader) Close() error {
	r.closed.Store(true)
	return nil
}

// Create implements storage.FS. The upload buffers in memory and appears at Close.
// The parent directory must exist. Cancelling ctx aborts the upload.
func (m *FS) Create(ctx context.Context, name string, opts storage.CreateOptions) (storage.Upload, error) {
	p, err := clean("create", name)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, &fs.PathError{Op: "create", Path: name, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Like S3, parents are implied by the name and need not exist.
	if p == "/" || m.isDirLocked(p) {
		return nil, &fs.PathError{Op: "create", Path: name, Err: storage.ErrIsDir}
	}
	if m.parentIsFileLocked(p) {
		return nil, &fs.PathError{Op: "create", Path: name, Err: storage.ErrNotDir}
	}
	m.pending++
	u := &upload{m: m, path: p, name: name, opts: opts, ctx: ctx}
	// u.mu is held while stop is set: a ctx cancelled by now runs Abort at once, elsewhere.
	u.mu.Lock()
	u.stop = context.AfterFunc(ctx, func() { _ = u.Abort(context.Cause(ctx)) })
	u.mu.Unlock()
	return u, nil
}

// Remove implements storage.FS.
func (m *FS) Remove(_ context.Context, name string) error {
	p, err := clean("remove", name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[p]; ok {
		delete(m.files, p)
		return nil
	}
	if m.isDirLocked(p) {
		return &fs.PathError{Op: "remove", Path: name, Err: storage.ErrIsDir}
	}
	return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
}

// Mkdir implements storage.FS. The parent must exist.
func (m *FS) Mkdir(_ context.Context, name string) error {
	p, err := clean("mkdir", name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entryLocked(p); ok {
		return &fs.PathError{Op: "mkdir", Path: name, Err: fs.ErrExist}
	}
	if err := m.parentErrLocked(p); err != nil {
		return &fs.PathError{Op: "mkdir", Path: name, Err: err}
	}
	m.dirs[p] = &dir{modTime: m.now()}
	return nil
}

// Rmdir implements storage.FS.
func (m *FS) Rmdir(_ context.Context, name string) error {
	p, err := clean("rmdir", name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if p == "/" {
		return &fs.PathError{Op: "rmdir", Path: name, Err: fs.ErrPermission}
	}
	if _, ok := m.files[p]; ok {
		return &fs.PathError{Op: "rmdir", Path: name, Err: storage.ErrNotDir}
	}
	if !m.isDirLocked(p) {
		return &fs.PathError{Op: "rmdir", Path: name, Err: fs.ErrNotExist}
	}
	prefix := p + "/"
	for k := range m.files {
		if strings.HasPrefix(k, prefix) {
			return &fs.PathError{Op: "rmdir", Path: name, Err: storage.ErrNotEmpty}
		}
	}
	for k := range m.dirs {
		if strings.HasPrefix(k, prefix) {
			return &fs.PathError{Op: "rmdir", Path: name, Err: storage.ErrNotEmpty}
		}
	}
	delete(m.dirs, p)
	return nil
}

// Rename implements storage.FS. A file replaces an existing file at to; a directory moves with
// everything under it and may not land on an existing path or inside itself.
func (m *FS) Rename(_ context.Context, from, to string) error { return m.rename(from, to, false) }

// RenameNoReplace implements storage.NoReplaceRenamer: as Rename, but a file at to (or, for a
// directory, a file at any of its destination paths) is never replaced: fs.ErrExist.
func (m *FS) RenameNoReplace(_ context.Context, from, to string) error {
	return m.rename(from, to, true)
}

func (m *FS) rename(from, to string, noReplace bool) error {
	src, err := clean("rename", from)
	if err != nil {
		return err
	}
	dst, err := clean("rename", to)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if src == "/" || dst == "/" {
		return &fs.PathError{Op: "rename", Path: from, Err: storage.ErrInvalidPath}
	}
	if _, ok := m.entryLocked(src); !ok {
		return &fs.PathError{Op: "rename", Path: from, Err: fs.ErrNotExist}
	}
	if err := m.parentErrLocked(dst); err != nil {
		return &fs.PathError{Op: "rename", Path: to, Err: err}
	}
	if f, ok := m.files[src]; ok {
		if src == dst {
			return nil
		}
		if m.isDirLocked(dst) {
			return &fs.PathError{Op: "rename", Path: to, Err: storage.ErrIsDir}
		}
		if _, exists := m.files[dst]; exists && noReplace {
			return &fs.PathError{Op: "rename", Path: to, Err: fs.ErrExist}
		}
		delete(m.files, src)
		m.files[dst] = f
		return nil
	}
	if !m.isDirLocked(src) {
		return &fs.PathError{Op: "rename", Path: from, Err: fs.ErrNotExist}
	}
	if src == dst {
		return nil
	}
	if strings.HasPrefix(dst, src+"/") {
		return &fs.PathError{Op: "rename", Path: to, Err: storage.ErrInvalidPath}
	}
	if _, exists := m.entryLocked(dst); exists {
		return &fs.PathError{Op: "rename", Path: to, Err: fs.ErrExist}
	}
	prefix := src + "/"
	for k, f := range m.files {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			delete(m.files, k)
			m.files[dst+"/"+rest] = f
		}
	}
	for k, d := range m.dirs {
		if k == src {
			delete(m.dirs, k)
			m.dirs[dst] = d
		} else if rest, ok := strings.CutPrefix(k, prefix); ok {
			delete(m.dirs, k)
			m.dirs[dst+"/"+rest] = d
		}
	}
	return nil
}

// SetStatIfWriter implements storage.WriterSetstater: a file's writer is its CreateOptions.User.
func (m *FS) SetStatIfWriter(ctx context.Context, name string, attrs storage.Attrs, user string) error {
	p, err := clean("setstat", name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	f, ok := m.files[p]
	if ok && (user == "" || f.opts.User != user) {
		m.mu.Unlock()
		return &fs.PathError{Op: "setstat", Path: name, Err: fs.ErrPermission}
	}
	if ok {
		applyAttrs(&f.mode, &f.modTime, attrs)
		m.mu.Unlock()
		return nil
	}
	m.mu.Unlock()
	return m.SetStat(ctx, name, attrs) // a directory, or nothing
}

// SetStat implements storage.Setstater.
func (m *FS) SetStat(_ context.Context, name string, attrs storage.Attrs) error {
	p, err := clean("setstat", name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.files[p]; ok {
		applyAttrs(&f.mode, &f.modTime, attrs)
		return nil
	}
	if m.isDirLocked(p) {
		d, ok := m.dirs[p]
		if !ok {
			d = &dir{modTime: m.now()}
			if p != "/" {
				m.dirs[p] = d
			}
		}
		applyAttrs(&d.mode, &d.modTime, attrs)
		return nil
	}
	return &fs.PathError{Op: "setstat", Path: name, Err: fs.ErrNotExist}
}

func applyAttrs(mode *fs.FileMode, mt *time.Time, a storage.Attrs) {
	if a.Mode != nil {
		*mode = a.Mode.Perm()
	}
	if a.ModTime != nil {
		*mt = *a.ModTime
	}
}

// SHA256 implements storage.Hasher.
func (m *FS) SHA256(_ context.Context, name string) (string, error) {
	p, err := clean("hash", name)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.files[p]; ok {
		return f.sha, nil
	}
	if m.isDirLocked(p) {
		return "", &fs.PathError{Op: "hash", Path: name, Err: storage.ErrIsDir}
	}
	return "", &fs.PathError{Op: "hash", Path: name, Err: fs.ErrNotExist}
}

// WriteFile stores data at name directly (test setup), replacing any file there. Unlike
// Create it needs no parent directory: the parents are implied by the file.
func (m *FS) WriteFile(name string, data []byte) error {
	p, err := clean("write", name)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	m.mu.Lock()
	defer m.mu.Unlock()
	if p == "/" || m.isDirLocked(p) {
		return &fs.PathError{Op: "write", Path: name, Err: storage.ErrIsDir}
	}
	m.files[p] = &file{data: bytes.Clone(data), modTime: m.now(), sha: hex.EncodeToString(sum[:])}
	return nil
}

// ReadFile returns a copy of the file at name.
func (m *FS) ReadFile(name string) ([]byte, error) {
	p, err := clean("read", name)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[p]
	if !ok {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return bytes.Clone(f.data), nil
}

// Files returns the paths of all files, sorted.
func (m *FS) Files() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.files))
	for k := range m.files {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Metadata returns what the S3 store records with an object (the storagetest.MetadataReader
// keys): user, protocol, client, transfer-id, sha256, and mode/mtime once set.
func (m *FS) Metadata(_ context.Context, name string) (map[string]string, error) {
	p, err := clean("metadata", name)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[p]
	if !ok {
		if m.isDirLocked(p) {
			return nil, &fs.PathError{Op: "metadata", Path: name, Err: storage.ErrIsDir}
		}
		return nil, &fs.PathError{Op: "metadata", Path: name, Err: fs.ErrNotExist}
	}
	md := map[string]string{"user": f.opts.User, "protocol": f.opts.Protocol, "client": f.opts.ClientAddr,
		"transfer-id": f.opts.TransferID, "sha256": f.sha}
	if f.mode != 0 {
		md["mode"] = fmt.Sprintf("%04o", uint32(f.mode.Perm()))
	}
	if !f.modTime.IsZero() {
		md["mtime"] = f.modTime.UTC().Format(time.RFC3339Nano)
	}
	return md, nil
}

// CreateOptions returns the options the file at name was uploaded with (zero for WriteFile).
func (m *FS) CreateOptions(name string) (storage.CreateOptions, bool) {
	p, err := clean("read", name)
	if err != nil {
		return storage.CreateOptions{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[p]
	if !ok {
		return storage.CreateOptions{}, false
	}
	return f.opts, true
}

// Pending reports how many uploads were created and neither committed nor aborted: a test that
// kills a client checks it drops to zero.
func (m *FS) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pending
}

// upload buffers writes; Close publishes them atomically, Abort drops them.
type upload struct {
	m     *FS
	path  string
	name  string
	opts  storage.CreateOptions
	ctx   context.Context // Create's: cancelling it aborts
	stop  func() bool     // stops the context watch
	mu    sync.Mutex
	buf   bytes.Buffer
	attrs storage.Attrs
	done  bool            // committed or aborted
	err   error           // result of the first Close/Abort, returned by later Closes
	obj   *storage.Object // set by a successful Close
}

// Bucket is the bucket name memstore reports for committed uploads (storage.Committer); keys
// are the virtual path without its leading slash.
const Bucket = "memstore"

var (
	_ storage.Upload       = (*upload)(nil)
	_ storage.AttrRecorder = (*upload)(nil)
	_ storage.Committer    = (*upload)(nil)
)

// Committed implements storage.Committer.
func (u *upload) Committed() (storage.Object, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.obj == nil {
		return storage.Object{Bucket: Bucket, Key: strings.TrimPrefix(u.path, "/")}, false
	}
	return *u.obj, true
}

func (u *upload) Write(p []byte) (int, error) {
	if u.ctx.Err() != nil {
		_ = u.Abort(context.Cause(u.ctx))
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		if u.err != nil {
			return 0, u.err
		}
		return 0, &fs.PathError{Op: "write", Path: u.name, Err: fs.ErrClosed}
	}
	return u.buf.Write(p)
}

func (u *upload) SetAttrs(a storage.Attrs) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if a.Mode != nil {
		u.attrs.Mode = a.Mode
	}
	if a.ModTime != nil {
		u.attrs.ModTime = a.ModTime
	}
}

func (u *upload) Close() error {
	if u.ctx.Err() != nil {
		// The watch runs asynchronously; do not let a Close right after the cancel win.
		_ = u.Abort(context.Cause(u.ctx))
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return u.err
	}
	u.done = true
	u.stop()
	data := u.buf.Bytes()
	sum := sha256.Sum256(data)
	f := &file{data: data, sha: hex.EncodeToString(sum[:]), opts: u.opts}
	m := u.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending--
	// The tree may have changed since Create: a directory may now sit at the path.
	if m.isDirLocked(u.path) {
		u.err = &fs.PathError{Op: "close", Path: u.name, Err: storage.ErrIsDir}
		return u.err
	}
	if m.parentIsFileLocked(u.path) {
		u.err = &fs.PathError{Op: "close", Path: u.name, Err: storage.ErrNotDir}
		return u.err
	}
	if _, exists := m.files[u.path]; exists && u.opts.NoReplace {
		u.err = &fs.PathError{Op: "close", Path: u.name, Err: fs.ErrExist}
		return u.err
	}
	f.modTime = m.now()
	applyAttrs(&f.mode, &f.modTime, u.attrs)
	m.files[u.path] = f
	md5sum := md5.Sum(data)
	u.obj = &storage.Object{Bucket: Bucket, Key: strings.TrimPrefix(u.path, "/"), Size: int64(len(data)),
		SHA256: f.sha, ETag: `"` + hex.EncodeToString(md5sum[:]) + `"`}
	return nil
}

func (u *upload) Abort(cause error) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil
	}
	u.done = true
	if u.stop != nil {
		u.stop()
	}
	u.buf = bytes.Buffer{}
	if cause == nil {
		u.err = &fs.PathError{Op: "close", Path: u.name, Err: storage.ErrAborted}
	} else {
		u.err = &fs.PathError{Op: "close", Path: u.name, Err: fmt.Errorf("%w: %w", storage.ErrAborted, cause)}
	}
	u.m.mu.Lock()
	u.m.pending--
	u.m.mu.Unlock()
	return nil
}
