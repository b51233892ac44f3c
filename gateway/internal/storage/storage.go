// Package storage is the protocol-neutral contract every front end (SFTP, FTP) is written against.
//
// An FS is one user's view: paths are virtual, slash-separated and rooted at the user's home
// ("/" is the home). Implementations map them to backend keys and guarantee nothing escapes.
// Errors use one vocabulary (fs.ErrNotExist, fs.ErrPermission, fs.ErrExist and the sentinels
// below), wrapped with the operation and path; front ends match them with errors.Is.
package storage

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"time"
)

// Sentinels beyond the io/fs ones.
var (
	ErrNotEmpty    = errors.New("directory not empty")
	ErrIsDir       = errors.New("is a directory")
	ErrNotDir      = errors.New("not a directory")
	ErrInvalidPath = errors.New("invalid path")
	ErrTooLarge    = errors.New("operation exceeds a configured limit")
	ErrUnsupported = errors.New("operation not supported")
	ErrAborted     = errors.New("upload aborted")
	// ErrBusy says the server lacked a shared resource (transfer memory) for longer than it
	// waits: the transfer failed, and the same request may succeed later.
	ErrBusy = errors.New("server busy")
)

// FS is the storage contract.
type FS interface {
	// Stat describes a file or directory. The home ("/") always exists.
	Stat(ctx context.Context, name string) (*Entry, error)
	// List calls fn for each direct child of dir, streaming (never the whole listing in memory).
	// An error returned by fn stops the listing and is returned.
	List(ctx context.Context, dir string, fn func(*Entry) error) error
	// Open opens a file for reading.
	Open(ctx context.Context, name string) (Reader, error)
	// Create starts an upload. Nothing is visible under name until Upload.Close succeeds.
	Create(ctx context.Context, name string, opts CreateOptions) (Upload, error)
	// Remove deletes a file (not a directory).
	Remove(ctx context.Context, name string) error
	// Mkdir creates a directory; fs.ErrExist if it already exists.
	Mkdir(ctx context.Context, name string) error
	// Rmdir removes an empty directory; ErrNotEmpty otherwise.
	Rmdir(ctx context.Context, name string) error
	// Rename moves a file or a whole directory. A directory rename either moves every key or
	// fails before moving any (ErrTooLarge past the configured limit).
	Rename(ctx context.Context, from, to string) error
}

// Setstater is implemented by stores that can record mode and times. Front ends must treat
// a missing implementation (or an error) as success: clients fail jobs on setstat errors.
type Setstater interface {
	SetStat(ctx context.Context, name string, attrs Attrs) error
}

// Hasher is implemented by stores that can return a file's SHA-256 (hex), computing it if the
// object does not carry one. It only reads: a computed sum is not recorded (the caller may be
// a user who may not modify the file).
type Hasher interface {
	SHA256(ctx context.Context, name string) (string, error)
}

// NoReplaceRenamer is implemented by stores that can rename without ever replacing a file at
// the destination, deciding it atomically with the write (S3: If-None-Match: *), so a file
// created there between a check and the move is not lost: fs.ErrExist, and nothing moved.
type NoReplaceRenamer interface {
	RenameNoReplace(ctx context.Context, from, to string) error
}

// WriterSetstater is implemented by stores that know who wrote each file: SetStatIfWriter
// records attributes only when the file's current version was uploaded by user, and otherwise
// fails with fs.ErrPermission. The check and the record concern the same version.
type WriterSetstater interface {
	SetStatIfWriter(ctx context.Context, name string, attrs Attrs, user string) error
}

// SpaceReporter is implemented by stores that can say how much room a view offers (SFTP's
// statvfs@openssh.com, OpenSSH's `df`). name is the path asked about; the figures may be the
// same for every path.
type SpaceReporter interface {
	Space(ctx context.Context, name string) (Space, error)
}

// Space is the room in a view. Clients divide by Total and Files (OpenSSH's df does), so
// neither is ever 0.
type Space struct {
	Total, Free      int64 // bytes
	Files, FreeFiles int64 // entries (inodes)
	MaxNameLen       int64 // longest name component, bytes
	ReadOnly         bool  // the view accepts no writes (the user's permissions)
}

// Attrs are the settable attributes; nil fields are left alone.
type Attrs struct {
	Mode    *fs.FileMode
	ModTime *time.Time
}

// Empty reports whether a sets nothing.
func (a Attrs) Empty() bool { return a.Mode == nil && a.ModTime == nil }

// CreateOptions describe who writes an object; stored as object metadata.
type CreateOptions struct {
	User       string
	Protocol   string // "sftp", "ftp", "ftps"
	ClientAddr string
	TransferID string
	// SessionID names the client connection (or protocol session) the upload belongs to, shared
	// by all its transfers; it travels in gateway events, not in object metadata.
	SessionID string
	// SizeHint is the expected size when the protocol knows it (0 = unknown); it only tunes part size.
	SizeHint int64
	// NoReplace makes the commit itself refuse to replace a file: Close fails with fs.ErrExist,
	// and writes nothing, when name exists by then (S3: If-None-Match: * on PutObject and
	// CompleteMultipartUpload), however long the upload took. For users without the overwrite
	// permission, whose check at open cannot see a file created during the upload.
	NoReplace bool
}

// Reader reads a file sequentially or at arbitrary offsets (SFTP clients read in parallel).
type Reader interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	io.Closer
	Size() int64
}

// Upload is a streaming write. Close commits (and returns any commit failure: a failed commit is
// a failed transfer); Abort discards everything written so no object appears. After Abort,
// Close returns an error wrapping ErrAborted. Both are safe to call more than once.
type Upload interface {
	io.Writer
	Close() error
	Abort(cause error) error
}

// Committer is implemented by uploads that can say what they committed: valid after Close
// returned nil (ok is false before that, and after a failed Close or an Abort). Bucket and Key
// are filled even when ok is false, so a failed upload can still be named. Decorators (event
// publishers) use it instead of re-hashing the bytes themselves.
type Committer interface {
	Committed() (Object, bool)
}

// Object is what a committed upload wrote.
type Object struct {
	Bucket string // the S3 bucket; stores without buckets name themselves (memstore: "memstore")
	Key    string // the backend key (raw, not URL-encoded)
	Size   int64
	SHA256 string // lower-case hex of the content
	ETag   string // as the backend returned it (S3: quoted), when known
}

// Entry describes a file or directory.
type Entry struct {
	Name string // base name
	Size int64
	// ModTime is the same in Stat and List. It may be zero when the store has no time (S3
	// directories); Info then reports the Unix epoch, which protocols can encode.
	ModTime time.Time
	Dir     bool
	// Mode is the stored permission bits (from setstat), or 0 when none was stored.
	Mode   fs.FileMode
	SHA256 string // hex, when known
}

// Info adapts an Entry to fs.FileInfo.
func (e *Entry) Info() fs.FileInfo { return entryInfo{e} }

type entryInfo struct{ e *Entry }

func (i entryInfo) Name() string { return i.e.Name }
func (i entryInfo) Size() int64  { return i.e.Size }
func (i entryInfo) ModTime() time.Time {
	if i.e.ModTime.IsZero() {
		// Year 1 is not representable in SFTP's 32-bit times: it wrapped to 2042.
		return time.Unix(0, 0).UTC()
	}
	return i.e.ModTime
}
func (i entryInfo) IsDir() bool { return i.e.Dir }
func (i entryInfo) Sys() any    { return i.e }
func (i entryInfo) Mode() fs.FileMode {
	perm := i.e.Mode.Perm()
	if i.e.Dir {
		if perm == 0 {
			perm = 0o755
		}
		return fs.ModeDir | perm
	}
	if perm == 0 {
		perm = 0o644
	}
	return perm
}

// AttrRecorder is implemented by uploads that can record attributes set on the open file
// (SFTP fsetstat, as `put -p` sends before close); they are stored with the object at commit.
type AttrRecorder interface {
	SetAttrs(Attrs)
}
