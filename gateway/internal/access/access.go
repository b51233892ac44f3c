// Package access enforces a user's permissions on their storage view, once, for every protocol.
package access

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// Restrict returns a view of fsys that refuses what p does not allow with fs.ErrPermission.
// Stat is always allowed (clients stat before nearly everything).
//
// Each operation needs the permission its effect implies, decided when the effect happens:
//   - Replacing a file needs overwrite. Without it, an upload is checked at open (a quick
//     refusal) and its commit is made conditional (storage.CreateOptions.NoReplace): a file
//     another user creates during the upload is not replaced, the upload fails. A rename is
//     conditional the same way where the store can (storage.NoReplaceRenamer).
//   - Recording a time or mode (setstat, MFMT, SITE CHMOD) modifies a file: it needs overwrite,
//     except on a file the user uploaded themselves (its current version; storage.WriterSetstater),
//     which a user with upload may date as they could when uploading it.
//   - HASH reads the whole file: it needs download, and writes nothing.
//
// Only users without overwrite pay for existence checks.
func Restrict(fsys storage.FS, p users.Permissions, opts ...Option) storage.FS {
	r := &restricted{fs: fsys, p: p}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Option configures Restrict.
type Option func(*restricted)

// User names the user the view is for, as uploads record it (CreateOptions.User): without it a
// user lacking overwrite may not date even their own uploads.
func User(name string) Option { return func(r *restricted) { r.user = name } }

type restricted struct {
	fs   storage.FS
	p    users.Permissions
	user string
}

// The view implements every optional interface itself and has no Unwrap (storage.As stops here):
// nothing may reach the store past the permission checks.
var (
	_ storage.FS               = (*restricted)(nil)
	_ storage.Setstater        = (*restricted)(nil)
	_ storage.Hasher           = (*restricted)(nil)
	_ storage.SpaceReporter    = (*restricted)(nil)
	_ storage.NoReplaceRenamer = (*restricted)(nil)
	_ storage.WriterSetstater  = (*restricted)(nil)
)

func deny(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrPermission}
}

func (r *restricted) Stat(ctx context.Context, name string) (*storage.Entry, error) {
	return r.fs.Stat(ctx, name)
}

func (r *restricted) List(ctx context.Context, dir string, fn func(*storage.Entry) error) error {
	if !r.p.List {
		return deny("list", dir)
	}
	return r.fs.List(ctx, dir, fn)
}

func (r *restricted) Open(ctx context.Context, name string) (storage.Reader, error) {
	if !r.p.Download {
		return nil, deny("open", name)
	}
	return r.fs.Open(ctx, name)
}

func (r *restricted) Create(ctx context.Context, name string, opts storage.CreateOptions) (storage.Upload, error) {
	switch {
	case !r.p.Upload && !r.p.Overwrite:
		return nil, deny("create", name)
	case r.p.Upload && r.p.Overwrite:
		// Nothing to check: keep uploads at one request per small file.
	default:
		exists, err := r.exists(ctx, name)
		if err != nil {
			return nil, err
		}
		if exists && !r.p.Overwrite {
			return nil, deny("overwrite", name)
		}
		if !exists && !r.p.Upload {
			return nil, deny("create", name)
		}
		// The check above is as old as the open; the commit decides.
		opts.NoReplace = !r.p.Overwrite
	}
	return r.fs.Create(ctx, name, opts)
}

func (r *restricted) exists(ctx context.Context, name string) (bool, error) {
	_, err := r.fs.Stat(ctx, name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("check %s: %w", name, err)
	}
}

func (r *restricted) Remove(ctx context.Context, name string) error {
	if !r.p.Delete {
		return deny("remove", name)
	}
	return r.fs.Remove(ctx, name)
}

func (r *restricted) Mkdir(ctx context.Context, name string) error {
	if !r.p.Mkdir {
		return deny("mkdir", name)
	}
	return r.fs.Mkdir(ctx, name)
}

func (r *restricted) Rmdir(ctx context.Context, name string) error {
	if !r.p.Delete {
		return deny("rmdir", name)
	}
	return r.fs.Rmdir(ctx, name)
}

func (r *restricted) Rename(ctx context.Context, from, to string) error {
	if !r.p.Rename {
		return deny("rename", from)
	}
	if r.p.Overwrite {
		return r.fs.Rename(ctx, from, to)
	}
	exists, err := r.exists(ctx, to)
	if err != nil {
		return err
	}
	if exists {
		return deny("rename", to)
	}
	// A file created at to since the check must survive the move too.
	if nr, ok := storage.As[storage.NoReplaceRenamer](r.fs); ok {
		err := nr.RenameNoReplace(ctx, from, to)
		if errors.Is(err, fs.ErrExist) {
			return deny("rename", to)
		}
		return err
	}
	return r.fs.Rename(ctx, from, to)
}

// RenameNoReplace needs rename; it never replaces a file whatever the permissions, so overwrite
// is not needed.
func (r *restricted) RenameNoReplace(ctx context.Context, from, to string) error {
	if !r.p.Rename {
		return deny("rename", from)
	}
	nr, ok := storage.As[storage.NoReplaceRenamer](r.fs)
	if !ok {
		return &fs.PathError{Op: "rename", Path: from, Err: storage.ErrUnsupported}
	}
	return nr.RenameNoReplace(ctx, from, to)
}

// SetStatIfWriter needs overwrite or upload: it only ever dates a file user uploaded.
func (r *restricted) SetStatIfWriter(ctx context.Context, name string, attrs storage.Attrs, user string) error {
	if !r.p.Overwrite && !r.p.Upload {
		return deny("setstat", name)
	}
	ws, ok := storage.As[storage.WriterSetstater](r.fs)
	if !ok {
		return &fs.PathError{Op: "setstat", Path: name, Err: storage.ErrUnsupported}
	}
	return ws.SetStatIfWriter(ctx, name, attrs, user)
}

// SetStat needs overwrite, or upload on the user's own upload (see Restrict).
func (r *restricted) SetStat(ctx context.Context, name string, attrs storage.Attrs) error {
	if r.p.Overwrite {
		s, ok := storage.As[storage.Setstater](r.fs)
		if !ok {
			return &fs.PathError{Op: "setstat", Path: name, Err: storage.ErrUnsupported}
		}
		return s.SetStat(ctx, name, attrs)
	}
	if !r.p.Upload || r.user == "" {
		return deny("setstat", name)
	}
	ws, ok := storage.As[storage.WriterSetstater](r.fs)
	if !ok {
		return deny("setstat", name)
	}
	return ws.SetStatIfWriter(ctx, name, attrs, r.user)
}

func (r *restricted) SHA256(ctx context.Context, name string) (string, error) {
	if !r.p.Download {
		return "", deny("hash", name)
	}
	h, ok := storage.As[storage.Hasher](r.fs)
	if !ok {
		return "", &fs.PathError{Op: "hash", Path: name, Err: storage.ErrUnsupported}
	}
	return h.SHA256(ctx, name)
}

// Space is allowed to anyone, as Stat is; a user who may write nothing sees a read-only view.
func (r *restricted) Space(ctx context.Context, name string) (storage.Space, error) {
	s, ok := storage.As[storage.SpaceReporter](r.fs)
	if !ok {
		return storage.Space{}, &fs.PathError{Op: "statvfs", Path: name, Err: storage.ErrUnsupported}
	}
	sp, err := s.Space(ctx, name)
	if err != nil {
		return sp, err
	}
	if !r.p.Upload && !r.p.Overwrite && !r.p.Mkdir && !r.p.Delete && !r.p.Rename {
		sp.ReadOnly = true
	}
	return sp, nil
}
