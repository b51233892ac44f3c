package memstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"reflect"
	"testing"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

func put(t *testing.T, m *FS, name, data string) {
	t.Helper()
	u, err := m.Create(t.Context(), name, storage.CreateOptions{User: "u", Protocol: "test"})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if _, err := io.WriteString(u, data); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	if err := u.Close(); err != nil {
		t.Fatalf("close %s: %v", name, err)
	}
}

func list(t *testing.T, m *FS, dir string) []string {
	t.Helper()
	var names []string
	err := m.List(t.Context(), dir, func(e *storage.Entry) error {
		n := e.Name
		if e.Dir {
			n += "/"
		}
		names = append(names, n)
		return nil
	})
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	return names
}

func TestUploadVisibleOnlyAtClose(t *testing.T) {
	m := New()
	ctx := t.Context()
	if err := m.Mkdir(ctx, "/a"); err != nil {
		t.Fatal(err)
	}
	u, err := m.Create(ctx, "/a/b.txt", storage.CreateOptions{User: "alice", TransferID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stat(ctx, "/a/b.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat during upload: %v, want not exist", err)
	}
	if m.Pending() != 1 {
		t.Fatalf("pending = %d, want 1", m.Pending())
	}
	mode := fs.FileMode(0o600)
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	u.(storage.AttrRecorder).SetAttrs(storage.Attrs{Mode: &mode, ModTime: &mt})
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	e, err := m.Stat(ctx, "a/b.txt")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("hello"))
	if e.Size != 5 || e.Dir || e.Mode != 0o600 || !e.ModTime.Equal(mt) || e.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("entry = %+v", e)
	}
	if opts, _ := m.CreateOptions("/a/b.txt"); opts.TransferID != "t1" || opts.User != "alice" {
		t.Fatalf("options = %+v", opts)
	}
	if m.Pending() != 0 {
		t.Fatalf("pending = %d, want 0", m.Pending())
	}
	if e, err := m.Stat(ctx, "/a"); err != nil || !e.Dir {
		t.Fatalf("implied dir: %+v %v", e, err)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	m := New()
	u, err := m.Create(t.Context(), "/x", storage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u.Write([]byte("partial"))
	cause := errors.New("client gone")
	if err := u.Abort(cause); err != nil {
		t.Fatal(err)
	}
	if err := u.Abort(nil); err != nil {
		t.Fatalf("second abort: %v", err)
	}
	err = u.Close()
	if !errors.Is(err, storage.ErrAborted) || !errors.Is(err, cause) {
		t.Fatalf("close after abort = %v", err)
	}
	if len(m.Files()) != 0 || m.Pending() != 0 {
		t.Fatalf("files %v pending %d", m.Files(), m.Pending())
	}
}

func TestReadAt(t *testing.T) {
	m := New()
	put(t, m, "/f", "0123456789")
	r, err := m.Open(t.Context(), "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 4)
	if n, err := r.ReadAt(buf, 6); n != 4 || string(buf) != "6789" || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt = %d %q %v", n, buf, err)
	}
	if n, err := r.ReadAt(buf, 8); n != 2 || err != io.EOF {
		t.Fatalf("short ReadAt = %d %v", n, err)
	}
	if r.Size() != 10 {
		t.Fatalf("size %d", r.Size())
	}
}

func TestErrors(t *testing.T) {
	m := New()
	if err := m.Mkdir(t.Context(), "/d"); err != nil {
		t.Fatal(err)
	}
	put(t, m, "/d/f", "x")
	if err := m.Mkdir(t.Context(), "/empty"); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"stat missing", func() error { _, err := m.Stat(ctx, "/nope"); return err }, fs.ErrNotExist},
		{"open dir", func() error { _, err := m.Open(ctx, "/d"); return err }, storage.ErrIsDir},
		{"open missing", func() error { _, err := m.Open(ctx, "/nope"); return err }, fs.ErrNotExist},
		{"create over dir", func() error { _, err := m.Create(ctx, "/d", storage.CreateOptions{}); return err }, storage.ErrIsDir},
		{"create under file", func() error { _, err := m.Create(ctx, "/d/f/g", storage.CreateOptions{}); return err }, storage.ErrNotDir},
		{"create nul", func() error { _, err := m.Create(ctx, "/a\x00b", storage.CreateOptions{}); return err }, storage.ErrInvalidPath},
		{"create backslash", func() error { _, err := m.Create(ctx, "..\\x", storage.CreateOptions{}); return err }, storage.ErrInvalidPath},
		{"mkdir without parent", func() error { return m.Mkdir(ctx, "/nope/x") }, fs.ErrNotExist},
		{"rename without parent", func() error { return m.Rename(ctx, "/d/f", "/nope/x") }, fs.ErrNotExist},
		{"remove dir", func() error { return m.Remove(ctx, "/d") }, storage.ErrIsDir},
		{"remove missing", func() error { return m.Remove(ctx, "/nope") }, fs.ErrNotExist},
		{"mkdir existing dir", func() error { return m.Mkdir(ctx, "/d") }, fs.ErrExist},
		{"mkdir existing file", func() error { return m.Mkdir(ctx, "/d/f") }, fs.ErrExist},
		{"mkdir under file", func() error { return m.Mkdir(ctx, "/d/f/x") }, storage.ErrNotDir},
		{"rmdir not empty", func() error { return m.Rmdir(ctx, "/d") }, storage.ErrNotEmpty},
		{"rmdir file", func() error { return m.Rmdir(ctx, "/d/f") }, storage.ErrNotDir},
		{"rmdir missing", func() error { return m.Rmdir(ctx, "/nope") }, fs.ErrNotExist},
		{"rmdir root", func() error { return m.Rmdir(ctx, "/") }, fs.ErrPermission},
		{"rename missing", func() error { return m.Rename(ctx, "/nope", "/x") }, fs.ErrNotExist},
		{"rename file onto dir", func() error { return m.Rename(ctx, "/d/f", "/empty") }, storage.ErrIsDir},
		{"rename dir onto existing", func() error { return m.Rename(ctx, "/d", "/empty") }, fs.ErrExist},
		{"rename dir into itself", func() error { return m.Rename(ctx, "/d", "/d/sub") }, storage.ErrInvalidPath},
		{"list file", func() error { return m.List(ctx, "/d/f", func(*storage.Entry) error { return nil }) }, storage.ErrNotDir},
		{"list missing", func() error { return m.List(ctx, "/nope", func(*storage.Entry) error { return nil }) }, fs.ErrNotExist},
		{"setstat missing", func() error { return m.SetStat(ctx, "/nope", storage.Attrs{}) }, fs.ErrNotExist},
		{"hash dir", func() error { _, err := m.SHA256(ctx, "/d"); return err }, storage.ErrIsDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestTreeOperations(t *testing.T) {
	m := New()
	ctx := t.Context()
	for _, d := range []string{"/a", "/a/sub"} {
		if err := m.Mkdir(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	put(t, m, "/a/1", "one")
	put(t, m, "/a/sub/2", "two")
	put(t, m, "/top", "t")
	if err := m.Mkdir(ctx, "/a/emptydir"); err != nil {
		t.Fatal(err)
	}
	if got, want := list(t, m, "/"), []string{"a/", "top"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("list / = %v, want %v", got, want)
	}
	if got, want := list(t, m, "/a"), []string{"1", "emptydir/", "sub/"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("list /a = %v, want %v", got, want)
	}
	// ".." cannot climb out of the root.
	if got, want := list(t, m, "/../../a/.."), []string{"a/", "top"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("list escape = %v, want %v", got, want)
	}
	if err := m.Rename(ctx, "/a", "/b"); err != nil {
		t.Fatal(err)
	}
	if got, want := m.Files(), []string{"/b/1", "/b/sub/2", "/top"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("files after dir rename = %v", got)
	}
	if e, err := m.Stat(ctx, "/b/emptydir"); err != nil || !e.Dir {
		t.Fatalf("explicit dir not moved: %v", err)
	}
	// A file rename replaces an existing file.
	if err := m.Rename(ctx, "/top", "/b/1"); err != nil {
		t.Fatal(err)
	}
	if data, _ := m.ReadFile("/b/1"); string(data) != "t" {
		t.Fatalf("overwritten content %q", data)
	}
	if err := m.Rmdir(ctx, "/b/emptydir"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "/b/sub/2"); err != nil {
		t.Fatal(err)
	}
	// A directory only implied by its file is gone with it.
	put(t, m, "/b/sub/3", "three")
	if err := m.Rmdir(ctx, "/b/sub"); err == nil {
		t.Fatal("rmdir of a non-empty dir succeeded")
	}
	m.WriteFile("/b/implied/x", nil)
	if err := m.Remove(ctx, "/b/implied/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stat(ctx, "/b/implied"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("implied dir after remove: %v", err)
	}
	mode := fs.FileMode(0o640)
	if err := m.SetStat(ctx, "/b/1", storage.Attrs{Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	if e, _ := m.Stat(ctx, "/b/1"); e.Info().Mode() != 0o640 {
		t.Fatalf("mode %v", e.Info().Mode())
	}
}

func TestListStopsOnCallbackError(t *testing.T) {
	m := New()
	put(t, m, "/1", "")
	put(t, m, "/2", "")
	stop := errors.New("stop")
	calls := 0
	err := m.List(context.Background(), "/", func(*storage.Entry) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("err %v calls %d", err, calls)
	}
}

func TestCancelAborts(t *testing.T) {
	m := New()
	ctx, cancel := context.WithCancel(t.Context())
	u, err := m.Create(ctx, "/c", storage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u.Write([]byte("x"))
	cancel()
	if err := u.Close(); !errors.Is(err, storage.ErrAborted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("close after cancel = %v", err)
	}
	if len(m.Files()) != 0 || m.Pending() != 0 {
		t.Fatal("cancelled upload left something")
	}
}

func TestCloseFailsWhenDirAppeared(t *testing.T) {
	m := New()
	u, err := m.Create(t.Context(), "/p", storage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Mkdir(t.Context(), "/p"); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); !errors.Is(err, storage.ErrIsDir) {
		t.Fatalf("close = %v, want ErrIsDir", err)
	}
	if m.Pending() != 0 {
		t.Fatal("pending not released")
	}
}
