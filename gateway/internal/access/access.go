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
// Stat is always allowed (clients stat before nearly everything). Creating over an existing
// file needs the overwrite permission; only users without it pay for the existence check.
func Restrict(fsys storage.FS, p users.Permissions) storage.FS {
	return &restricted{fs: fsys, p: p}
}

type restricted struct {
	fs storage.FS
	p  users.Permissions
}

var (
	_ storage.FS            = (*restricted)(nil)
	_ storage.Setstater     = (*restricted)(nil)
	_ storage.Hasher        = (*restricted)(nil)
	_ storage.SpaceReporter = (*restricted)(nil)
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
	if !r.p.Overwrite {
		exists, err := r.exists(ctx, to)
		if err != nil {
			return err
		}
		if exists {
			return deny("rename", to)
		}
	}
	return r.fs.Rename(ctx, from, to)
}

// SetStat needs a write permission; front ends report success either way.
func (r *restricted) SetStat(ctx context.Context, name string, attrs storage.Attrs) error {
	if !r.p.Upload && !r.p.Overwrite {
		return deny("setstat", name)
	}
	s, ok := r.fs.(storage.Setstater)
	if !ok {
		return &fs.PathError{Op: "setstat", Path: name, Err: storage.ErrUnsupported}
	}
	return s.SetStat(ctx, name, attrs)
}

func (r *restricted) SHA256(ctx context.Context, name string) (string, error) {
	if !r.p.Download && !r.p.List {
		return "", deny("hash", name)
	}
	h, ok := r.fs.(storage.Hasher)
	if !ok {
		return "", &fs.PathError{Op: "hash", Path: name, Err: storage.ErrUnsupported}
	}
	return h.SHA256(ctx, name)
}

// Space is allowed to anyone, as Stat is; a user who may write nothing sees a read-only view.
func (r *restricted) Space(ctx context.Context, name string) (storage.Space, error) {
	s, ok := r.fs.(storage.SpaceReporter)
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
