package access

import (
	"context"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// Live is Restrict with permissions read at every operation: perms returns the user's
// permissions now (from the users file in force), so an edit applies to the session's next
// command without a new login. An upload already open finishes under the permissions it was
// opened with; revoking the user (package sessions) closes the session, which aborts it.
func Live(fsys storage.FS, perms func() users.Permissions, opts ...Option) storage.FS {
	return &live{fs: fsys, perms: perms, opts: opts}
}

// live offers every ability restricted does (a test compares their method sets), each through
// a restricted view with the current permissions.
type live struct {
	fs    storage.FS
	perms func() users.Permissions
	opts  []Option
}

var (
	_ storage.FS               = (*live)(nil)
	_ storage.Setstater        = (*live)(nil)
	_ storage.Hasher           = (*live)(nil)
	_ storage.SpaceReporter    = (*live)(nil)
	_ storage.NoReplaceRenamer = (*live)(nil)
	_ storage.WriterSetstater  = (*live)(nil)
)

func (l *live) now() *restricted { return Restrict(l.fs, l.perms(), l.opts...).(*restricted) }

func (l *live) Stat(ctx context.Context, name string) (*storage.Entry, error) {
	return l.now().Stat(ctx, name)
}

func (l *live) List(ctx context.Context, dir string, fn func(*storage.Entry) error) error {
	return l.now().List(ctx, dir, fn)
}

func (l *live) Open(ctx context.Context, name string) (storage.Reader, error) {
	return l.now().Open(ctx, name)
}

func (l *live) Create(ctx context.Context, name string, opts storage.CreateOptions) (storage.Upload, error) {
	return l.now().Create(ctx, name, opts)
}

func (l *live) Remove(ctx context.Context, name string) error { return l.now().Remove(ctx, name) }
func (l *live) Mkdir(ctx context.Context, name string) error  { return l.now().Mkdir(ctx, name) }
func (l *live) Rmdir(ctx context.Context, name string) error  { return l.now().Rmdir(ctx, name) }

func (l *live) Rename(ctx context.Context, from, to string) error {
	return l.now().Rename(ctx, from, to)
}

func (l *live) SetStat(ctx context.Context, name string, attrs storage.Attrs) error {
	return l.now().SetStat(ctx, name, attrs)
}

func (l *live) RenameNoReplace(ctx context.Context, from, to string) error {
	return l.now().RenameNoReplace(ctx, from, to)
}

func (l *live) SetStatIfWriter(ctx context.Context, name string, attrs storage.Attrs, user string) error {
	return l.now().SetStatIfWriter(ctx, name, attrs, user)
}

func (l *live) SHA256(ctx context.Context, name string) (string, error) {
	return l.now().SHA256(ctx, name)
}

func (l *live) Space(ctx context.Context, name string) (storage.Space, error) {
	return l.now().Space(ctx, name)
}
