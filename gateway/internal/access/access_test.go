package access_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

func seed(t *testing.T) *memstore.FS {
	t.Helper()
	m := memstore.New()
	ctx := context.Background()
	if err := m.Mkdir(ctx, "/dir"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"/existing", "/dir/inside", "/mine"} {
		opts := storage.CreateOptions{User: "other"}
		if name == "/mine" {
			opts.User = "me"
		}
		up, err := m.Create(ctx, name, opts)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(up, "old")
		if err := up.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func write(ctx context.Context, fsys storage.FS, name string) error {
	up, err := fsys.Create(ctx, name, storage.CreateOptions{})
	if err != nil {
		return err
	}
	io.WriteString(up, "new")
	return up.Close()
}

// TestRestrict: every operation is refused with fs.ErrPermission unless its permission is
// granted, and a refused operation changes nothing.
func TestRestrict(t *testing.T) {
	ops := map[string]func(context.Context, storage.FS) error{
		"list": func(ctx context.Context, f storage.FS) error {
			return f.List(ctx, "/", func(*storage.Entry) error { return nil })
		},
		"download": func(ctx context.Context, f storage.FS) error {
			r, err := f.Open(ctx, "/existing")
			if err == nil {
				r.Close()
			}
			return err
		},
		"upload new":  func(ctx context.Context, f storage.FS) error { return write(ctx, f, "/fresh") },
		"overwrite":   func(ctx context.Context, f storage.FS) error { return write(ctx, f, "/existing") },
		"delete":      func(ctx context.Context, f storage.FS) error { return f.Remove(ctx, "/existing") },
		"rmdir":       func(ctx context.Context, f storage.FS) error { return f.Rmdir(ctx, "/emptydir") },
		"rename":      func(ctx context.Context, f storage.FS) error { return f.Rename(ctx, "/existing", "/moved") },
		"rename over": func(ctx context.Context, f storage.FS) error { return f.Rename(ctx, "/existing", "/dir/inside") },
		"mkdir":       func(ctx context.Context, f storage.FS) error { return f.Mkdir(ctx, "/newdir") },
		"setstat": func(ctx context.Context, f storage.FS) error {
			return f.(storage.Setstater).SetStat(ctx, "/existing", storage.Attrs{})
		},
		"setstat own": func(ctx context.Context, f storage.FS) error {
			return f.(storage.Setstater).SetStat(ctx, "/mine", storage.Attrs{})
		},
		"hash": func(ctx context.Context, f storage.FS) error {
			_, err := f.(storage.Hasher).SHA256(ctx, "/existing")
			return err
		},
		"stat always works": func(ctx context.Context, f storage.FS) error { _, err := f.Stat(ctx, "/existing"); return err },
	}
	all := users.Permissions{List: true, Download: true, Upload: true, Overwrite: true, Delete: true, Rename: true, Mkdir: true}
	for _, tt := range []struct {
		name    string
		perms   users.Permissions
		allowed []string
	}{
		{"everything", all, []string{"list", "download", "upload new", "overwrite", "delete", "rmdir", "rename", "rename over", "mkdir", "setstat", "setstat own", "hash", "stat always works"}},
		{"read-only", users.Permissions{List: true, Download: true}, []string{"list", "download", "hash", "stat always works"}},
		{"list-only", users.Permissions{List: true}, []string{"list", "stat always works"}},
		// Recording a time on a file is modifying it: a drop box may date only its own uploads.
		{"drop box", users.Permissions{Upload: true}, []string{"upload new", "setstat own", "stat always works"}},
		{"upload and overwrite", users.Permissions{Upload: true, Overwrite: true}, []string{"upload new", "overwrite", "setstat", "setstat own", "stat always works"}},
		{"overwrite only", users.Permissions{Overwrite: true}, []string{"overwrite", "setstat", "setstat own", "stat always works"}},
		{"rename without overwrite", users.Permissions{Rename: true}, []string{"rename", "stat always works"}},
		{"nothing", users.Permissions{}, []string{"stat always works"}},
	} {
		allowed := map[string]bool{}
		for _, a := range tt.allowed {
			allowed[a] = true
		}
		views := map[string]func(storage.FS, users.Permissions) storage.FS{
			"restrict": func(f storage.FS, p users.Permissions) storage.FS {
				return access.Restrict(f, p, access.User("me"))
			},
			"live": func(f storage.FS, p users.Permissions) storage.FS {
				return access.Live(f, func() users.Permissions { return p }, access.User("me"))
			},
		}
		for op, run := range ops {
			for view, restrict := range views {
				t.Run(tt.name+"/"+op+"/"+view, func(t *testing.T) {
					ctx := context.Background()
					m := seed(t)
					if op == "rmdir" {
						m.Mkdir(ctx, "/emptydir")
					}
					before := m.Files()
					err := run(ctx, restrict(m, tt.perms))
					switch {
					case allowed[op] && err != nil:
						t.Errorf("%s with %+v: %v, want success", op, tt.perms, err)
					case !allowed[op] && !errors.Is(err, fs.ErrPermission):
						t.Errorf("%s with %+v: %v, want fs.ErrPermission", op, tt.perms, err)
					case !allowed[op] && !sameFiles(before, m.Files()):
						t.Errorf("refused %s changed the store: %v -> %v", op, before, m.Files())
					}
				})
			}
		}
	}
}

func sameFiles(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// Without overwrite, what the check at open could not see is decided at the commit: a file
// another user creates during the upload, or at a rename's destination after the check, is
// kept; the upload fails with fs.ErrExist, the rename with fs.ErrPermission (a refused rename).
func TestOverwriteDecidedAtCommit(t *testing.T) {
	ctx := context.Background()
	m := seed(t)
	view := access.Restrict(m, users.Permissions{Upload: true, Rename: true}, access.User("me"))
	up, err := view.Create(ctx, "/late", storage.CreateOptions{User: "me"})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(up, "mine")
	if err := write(ctx, m, "/late"); err != nil { // another user, with overwrite
		t.Fatal(err)
	}
	if err := up.Close(); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Close = %v, want fs.ErrExist", err)
	}
	if got, _ := m.ReadFile("/late"); string(got) != "new" {
		t.Errorf("/late = %q, want the other user's", got)
	}
	// A rename onto a name taken between the check and the move: the store refuses it.
	racy := racingRenamer{FS: m, onRename: func() { write(ctx, m, "/target") }}
	err = access.Restrict(racy, users.Permissions{Rename: true}).Rename(ctx, "/existing", "/target")
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("rename onto a file created meanwhile = %v, want fs.ErrPermission", err)
	}
	if got, _ := m.ReadFile("/target"); string(got) != "new" {
		t.Errorf("/target = %q, want the other user's", got)
	}
	if _, err := m.ReadFile("/existing"); err != nil {
		t.Errorf("the source is gone: %v", err)
	}
}

// racingRenamer creates a file (onRename) just before a no-replace rename runs.
type racingRenamer struct {
	*memstore.FS
	onRename func()
}

func (r racingRenamer) RenameNoReplace(ctx context.Context, from, to string) error {
	r.onRename()
	return r.FS.RenameNoReplace(ctx, from, to)
}

// A live view follows the permissions at each operation: a session loses an upload right on
// its next command, and gets it back the same way.
func TestLiveFollowsPermissions(t *testing.T) {
	ctx := context.Background()
	m := seed(t)
	perms := users.Permissions{List: true, Upload: true}
	v := access.Live(m, func() users.Permissions { return perms })
	if err := write(ctx, v, "/one"); err != nil {
		t.Fatal(err)
	}
	// An upload opened now...
	up, err := v.Create(ctx, "/open", storage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	perms = users.Permissions{List: true}
	if err := write(ctx, v, "/two"); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("upload after the right was dropped: %v", err)
	}
	if err := v.List(ctx, "/", func(*storage.Entry) error { return nil }); err != nil {
		t.Fatalf("list: %v", err)
	}
	// ...finishes under the permissions it was opened with.
	io.WriteString(up, "x")
	if err := up.Close(); err != nil {
		t.Fatalf("upload opened before the change: %v", err)
	}
	perms = users.Permissions{}
	if err := v.List(ctx, "/", func(*storage.Entry) error { return nil }); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("list after every right was dropped: %v", err)
	}
	perms = users.Permissions{Upload: true}
	if err := write(ctx, v, "/three"); err != nil {
		t.Fatalf("upload after the right came back: %v", err)
	}
}
