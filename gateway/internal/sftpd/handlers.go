package sftpd

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sync"
	"time"

	"github.com/pkg/sftp"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/transfermem"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// session serves one SFTP channel for one logged-in user. Its methods are pkg/sftp's request
// handlers.
type session struct {
	srv    *Server
	conn   *connState
	user   *users.User
	fs     storage.FS
	remote string // client address (ip:port), recorded with uploads as FTP does
	log    *slog.Logger
	// ctx ends when the channel or the connection ends. pkg/sftp's request contexts only end
	// when its Serve returns, which waits for every handler: storage calls and waiting writes
	// must also end with the session or a dead client could hold them forever.
	ctx context.Context

	mem *transfermem.Budget // the user's share of the transfer memory

	mu      sync.Mutex
	uploads map[string]*upload // open uploads by path, so setstat/stat reach them
}

var (
	_ sftp.FileReader           = (*session)(nil)
	_ sftp.OpenFileWriter       = (*session)(nil)
	_ sftp.PosixRenameFileCmder = (*session)(nil)
	_ sftp.LstatFileLister      = (*session)(nil)
	_ sftp.RealPathFileLister   = (*session)(nil)
	_ sftp.ReadlinkFileLister   = (*session)(nil)
	_ sftp.StatVFSFileCmder     = (*session)(nil)
)

func (s *session) handlers() sftp.Handlers {
	return sftp.Handlers{FileGet: s, FilePut: s, FileCmd: s, FileList: s}
}

// opCtx is the request's context, also cancelled when the session ends.
func (s *session) opCtx(r *sftp.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(r.Context())
	stop := context.AfterFunc(s.ctx, func() { cancel(context.Cause(s.ctx)) })
	return ctx, func() { stop(); cancel(nil) }
}

// fail logs err with the operation and path and returns what the client should see.
func (s *session) fail(op, name string, err error, attrs ...any) error {
	out, level := clientError(err)
	s.log.Log(s.ctx, level, "sftp "+op+" failed", append([]any{"path", name, "error", err.Error()}, attrs...)...)
	return out
}

// busy marks a handler as running so the idle timer does not cut a slow storage call.
func (s *session) busy() func() {
	s.conn.busy.Add(1)
	return func() { s.conn.busy.Add(-1); s.conn.touch() }
}

func (s *session) trackUpload(name string, u *upload) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.uploads[name] = u
}

func (s *session) untrackUpload(name string, u *upload) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uploads[name] == u {
		delete(s.uploads, name)
	}
}

func (s *session) openUpload(name string) *upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uploads[name]
}

// Filecmd implements sftp.FileCmder.
func (s *session) Filecmd(r *sftp.Request) error {
	defer s.busy()()
	ctx, cancel := s.opCtx(r)
	defer cancel()
	name := r.Filepath
	switch r.Method {
	case "Setstat":
		return s.setstat(ctx, r)
	case "Rename":
		// SFTP v3 rename does not replace an existing target (OpenSSH's server neither);
		// clients that want replacement use posix-rename.
		if _, err := s.fs.Stat(ctx, r.Target); err == nil {
			return s.fail("rename", name, &fs.PathError{Op: "rename", Path: r.Target, Err: fs.ErrExist}, "target", r.Target)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return s.fail("rename", name, err, "target", r.Target)
		}
		return s.rename(ctx, name, r.Target)
	case "Rmdir":
		if err := s.fs.Rmdir(ctx, name); err != nil {
			return s.fail("rmdir", name, err)
		}
		s.log.Info("directory removed", "path", name)
	case "Mkdir":
		if err := s.fs.Mkdir(ctx, name); err != nil {
			return s.fail("mkdir", name, err)
		}
		s.log.Info("directory created", "path", name)
	case "Remove":
		if err := s.fs.Remove(ctx, name); err != nil {
			return s.fail("remove", name, err)
		}
		s.log.Info("file removed", "path", name)
	case "Link", "Symlink":
		return s.fail(lower(r.Method), name, storage.ErrUnsupported)
	default:
		return s.fail(lower(r.Method), name, storage.ErrUnsupported)
	}
	return nil
}

func lower(m string) string {
	b := []byte(m)
	if len(b) > 0 && b[0] >= 'A' && b[0] <= 'Z' {
		b[0] += 'a' - 'A'
	}
	return string(b)
}

// PosixRename implements sftp.PosixRenameFileCmder: rename that replaces the target.
func (s *session) PosixRename(r *sftp.Request) error {
	defer s.busy()()
	ctx, cancel := s.opCtx(r)
	defer cancel()
	return s.rename(ctx, r.Filepath, r.Target)
}

func (s *session) rename(ctx context.Context, from, to string) error {
	if err := s.fs.Rename(ctx, from, to); err != nil {
		return s.fail("rename", from, err, "target", to)
	}
	s.log.Info("renamed", "path", from, "target", to)
	return nil
}

// setstat records mode and mtime. It never fails towards the client: `put -p`, WinSCP and
// rclone fail whole jobs on a setstat error, and an object store has no owner or size to set.
// setstat records mode and time. Clients fail whole jobs on a refused setstat, so failures of
// the store are reported as success; only a refusal by the user's permissions (another user's
// file, for a user without overwrite) is an error the client sees.
func (s *session) setstat(ctx context.Context, r *sftp.Request) error {
	flags := r.AttrFlags()
	a := r.Attributes()
	var attrs storage.Attrs
	if flags.Permissions {
		mode := fs.FileMode(a.Mode).Perm()
		attrs.Mode = &mode
	}
	if flags.Acmodtime {
		mt := time.Unix(int64(a.Mtime), 0)
		attrs.ModTime = &mt
	}
	if flags.Size || flags.UidGid {
		s.log.Debug("setstat: size and owner are ignored", "path", r.Filepath, "size", flags.Size, "owner", flags.UidGid)
	}
	if attrs.Empty() {
		return nil
	}
	// fsetstat on an upload (or setstat on its path) before close: the object does not exist
	// yet, so the upload keeps the attributes for its commit.
	if u := s.openUpload(r.Filepath); u != nil {
		u.setAttrs(attrs)
		return nil
	}
	st, ok := storage.As[storage.Setstater](s.fs)
	if !ok {
		s.log.Debug("setstat ignored: storage cannot record attributes", "path", r.Filepath)
		return nil
	}
	if err := st.SetStat(ctx, r.Filepath, attrs); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return s.fail("setstat", r.Filepath, err)
		}
		_, level := clientError(err)
		s.log.Log(ctx, max(level, slog.LevelInfo), "setstat failed, reported as success", "path", r.Filepath, "error", err.Error())
	}
	return nil
}

// Filelist implements sftp.FileLister for List and Stat.
func (s *session) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	switch r.Method {
	case "List":
		return s.list(r)
	case "Stat":
		return s.stat(r)
	default:
		return nil, s.fail(lower(r.Method), r.Filepath, storage.ErrUnsupported)
	}
}

// Lstat implements sftp.LstatFileLister: there are no links, so it is Stat.
func (s *session) Lstat(r *sftp.Request) (sftp.ListerAt, error) { return s.stat(r) }

// RealPath implements sftp.RealPathFileLister: the home is "/" and nothing is above it.
func (s *session) RealPath(p string) (string, error) {
	return path.Clean("/" + p), nil
}

// Readlink implements sftp.ReadlinkFileLister: object stores have no symbolic links.
func (s *session) Readlink(p string) (string, error) {
	return "", errUnsupported
}

func (s *session) stat(r *sftp.Request) (sftp.ListerAt, error) {
	defer s.busy()()
	ctx, cancel := s.opCtx(r)
	defer cancel()
	// A file being uploaded by this session is described by what was received so far (clients
	// fstat their handle); other sessions do not see it until it is committed.
	if u := s.openUpload(r.Filepath); u != nil {
		e := &storage.Entry{Name: path.Base(r.Filepath), Size: u.rw.Size(), ModTime: time.Now()}
		return entries{e.Info()}, nil
	}
	e, err := s.fs.Stat(ctx, r.Filepath)
	if err != nil {
		return nil, s.fail("stat", r.Filepath, err)
	}
	if r.Filepath == "/" {
		e.Name = "/"
	}
	return entries{e.Info()}, nil
}

type entries []os.FileInfo

func (l entries) ListAt(buf []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(buf, l[off:])
	if n < len(buf) {
		return n, io.EOF
	}
	return n, nil
}

// list streams storage.List into pkg/sftp's ListAt batches, so a huge directory is never held
// in memory. It waits for the first entry so a missing directory fails at opendir.
func (s *session) list(r *sftp.Request) (sftp.ListerAt, error) {
	defer s.busy()()
	ctx, cancel := s.opCtx(r)
	name := r.Filepath
	l := &dirLister{ch: make(chan *storage.Entry, 64), errc: make(chan error, 1), cancel: cancel,
		fail: func(err error) error { return s.fail("list", name, err) }}
	go func() {
		err := s.fs.List(ctx, r.Filepath, func(e *storage.Entry) error {
			select {
			case l.ch <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		l.errc <- err
		close(l.ch)
	}()
	e, ok := <-l.ch
	if !ok {
		if err := <-l.errc; err != nil {
			cancel()
			return nil, s.fail("list", r.Filepath, err)
		}
		l.done = true
	}
	l.first = e
	return l, nil
}

type dirLister struct {
	ch     chan *storage.Entry
	errc   chan error
	cancel context.CancelFunc
	fail   func(error) error // logs a listing error and maps it for the client
	first  *storage.Entry
	done   bool
	err    error
}

// ListAt returns the next batch; pkg/sftp asks for consecutive offsets on one handle.
func (l *dirLister) ListAt(buf []os.FileInfo, _ int64) (int, error) {
	n := 0
	if l.first != nil && n < len(buf) {
		buf[n] = l.first.Info()
		l.first = nil
		n++
	}
	for n < len(buf) && !l.done {
		e, ok := <-l.ch
		if !ok {
			l.done = true
			l.err = <-l.errc
			break
		}
		buf[n] = e.Info()
		n++
	}
	if l.done {
		if l.err != nil {
			err := l.fail(l.err)
			l.err = nil // reported once; the next call ends the listing
			return n, err
		}
		return n, io.EOF
	}
	return n, nil
}

// Close stops the listing goroutine (pkg/sftp calls it when the handle closes).
func (l *dirLister) Close() error {
	l.cancel()
	return nil
}

// statvfsBlock is the block size statvfs answers are counted in.
const statvfsBlock = 4096

// statvfsReadOnly is SSH_FXE_STATVFS_ST_RDONLY (OpenSSH's PROTOCOL, statvfs@openssh.com).
const statvfsReadOnly = 0x1

// StatVFS implements sftp.StatVFSFileCmder: statvfs@openssh.com, OpenSSH's `df`, WinSCP's free
// space. It answers with the store's figures (storage.SpaceReporter: for S3, "plenty" — see
// s3store), read-only for users who may write nothing; a store that cannot say is refused as
// unsupported. Totals are at least one block and one entry: OpenSSH's df divides by them.
func (s *session) StatVFS(r *sftp.Request) (*sftp.StatVFS, error) {
	defer s.busy()()
	ctx, cancel := s.opCtx(r)
	defer cancel()
	sr, ok := storage.As[storage.SpaceReporter](s.fs)
	if !ok {
		return nil, s.fail("statvfs", r.Filepath, storage.ErrUnsupported)
	}
	sp, err := sr.Space(ctx, r.Filepath)
	if err != nil {
		return nil, s.fail("statvfs", r.Filepath, err)
	}
	st := &sftp.StatVFS{
		Bsize:   statvfsBlock,
		Frsize:  statvfsBlock,
		Blocks:  max(1, uint64(max(0, sp.Total))/statvfsBlock),
		Bfree:   uint64(max(0, sp.Free)) / statvfsBlock,
		Files:   max(1, uint64(max(0, sp.Files))),
		Ffree:   uint64(max(0, sp.FreeFiles)),
		Namemax: uint64(max(0, sp.MaxNameLen)),
	}
	st.Bfree = min(st.Bfree, st.Blocks)
	st.Ffree = min(st.Ffree, st.Files)
	st.Bavail, st.Favail = st.Bfree, st.Ffree
	if sp.ReadOnly {
		st.Flag |= statvfsReadOnly
	}
	return st, nil
}
