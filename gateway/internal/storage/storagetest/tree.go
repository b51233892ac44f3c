package storagetest

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

func testRoot(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	for _, name := range []string{"/", "", ".", "..", "/../.."} {
		e := mustStat(t, fsys, name)
		if !e.Dir {
			t.Errorf("stat %q: %+v, want a directory", name, e)
		}
	}
	wantList(t, fsys, "/")
	wantErr(t, "rmdir /", fsys.Rmdir(t.Context(), "/"), fs.ErrPermission, storage.ErrInvalidPath)
	wantErr(t, "remove /", fsys.Remove(t.Context(), "/"), storage.ErrIsDir, fs.ErrPermission)
	wantErr(t, "mkdir /", fsys.Mkdir(t.Context(), "/"), fs.ErrExist)
	wantErr(t, "rename /", fsys.Rename(t.Context(), "/", "/x"), fs.ErrPermission, storage.ErrInvalidPath)
	_, err := fsys.Create(t.Context(), "/", defaultOpts)
	wantErr(t, "create /", err, storage.ErrIsDir)
	_, err = fsys.Open(t.Context(), "/")
	wantErr(t, "open /", err, storage.ErrIsDir)
}

func testStatAndList(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	mustMkdir(t, fsys, "/a")
	mustMkdir(t, fsys, "/a/empty")
	writeFile(t, fsys, "/a/one.txt", []byte("1"))
	writeFile(t, fsys, "/a/two.bin", []byte("22"))
	mustMkdir(t, fsys, "/a/sub")
	writeFile(t, fsys, "/a/sub/deep.txt", []byte("deep"))
	writeFile(t, fsys, "/top", nil)
	writeFile(t, fsys, "/name with spaces & ünïcode", []byte("x"))

	wantList(t, fsys, "/", "a/", "name with spaces & ünïcode", "top")
	wantList(t, fsys, "/a", "empty/", "one.txt", "sub/", "two.bin")
	wantList(t, fsys, "a/", "empty/", "one.txt", "sub/", "two.bin")
	wantList(t, fsys, "/a/empty")
	wantList(t, fsys, "/a/sub", "deep.txt")

	for _, e := range list(t, fsys, "/a") {
		want := map[string]int64{"one.txt": 1, "two.bin": 2}[e.Name]
		if !e.Dir && e.Size != want {
			t.Errorf("list /a: %s has size %d, want %d", e.Name, e.Size, want)
		}
		if !e.Dir && e.ModTime.IsZero() {
			t.Errorf("list /a: %s has no modification time", e.Name)
		}
	}
	tests := []struct {
		name    string
		dir     bool
		size    int64
		base    string
		wantErr error
	}{
		{name: "/a", dir: true, base: "a"},
		{name: "/a/", dir: true, base: "a"},
		{name: "a/sub/..", dir: true, base: "a"},
		{name: "/a/empty", dir: true, base: "empty"},
		{name: "/a/sub", dir: true, base: "sub"},
		{name: "/a/one.txt", size: 1, base: "one.txt"},
		{name: "a/./sub/deep.txt", size: 4, base: "deep.txt"},
		{name: "/top", size: 0, base: "top"},
		{name: "/missing", wantErr: fs.ErrNotExist},
		{name: "/a/missing/deeper", wantErr: fs.ErrNotExist},
		{name: "/a/one.tx", wantErr: fs.ErrNotExist}, // a prefix of a key is not a file
		{name: "/a/su", wantErr: fs.ErrNotExist},     // nor of a directory
	}
	for _, tt := range tests {
		e, err := fsys.Stat(t.Context(), tt.name)
		if tt.wantErr != nil {
			wantErr(t, "stat "+tt.name, err, tt.wantErr)
			continue
		}
		if err != nil {
			t.Errorf("stat %s: %v", tt.name, err)
			continue
		}
		if e.Dir != tt.dir || e.Name != tt.base || (!tt.dir && e.Size != tt.size) {
			t.Errorf("stat %s = %+v, want name %q dir %v size %d", tt.name, e, tt.base, tt.dir, tt.size)
		}
		if fi := e.Info(); fi.IsDir() != tt.dir || fi.Name() != tt.base {
			t.Errorf("stat %s: Info() = %v %v", tt.name, fi.Name(), fi.IsDir())
		}
	}
	err := fsys.List(t.Context(), "/missing", func(*storage.Entry) error { return nil })
	wantErr(t, "list /missing", err, fs.ErrNotExist)
	err = fsys.List(t.Context(), "/top", func(*storage.Entry) error { return nil })
	wantErr(t, "list a file", err, storage.ErrNotDir)
	stop := errors.New("stop here")
	calls := 0
	err = fsys.List(t.Context(), "/a", func(*storage.Entry) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("list with a failing callback: err %v after %d calls, want %v after 1", err, calls, stop)
	}
}

func testInvalidPaths(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ctx := t.Context()
	for _, name := range []string{"a\x00b", "a\\b", "..\\x", "a\nb", "bad\xffutf8", "/" + strings.Repeat("n", 256)} {
		_, err := fsys.Stat(ctx, name)
		wantErr(t, "stat "+name, err, storage.ErrInvalidPath)
		_, err = fsys.Create(ctx, name, defaultOpts)
		wantErr(t, "create "+name, err, storage.ErrInvalidPath)
		wantErr(t, "mkdir "+name, fsys.Mkdir(ctx, name), storage.ErrInvalidPath)
		wantErr(t, "remove "+name, fsys.Remove(ctx, name), storage.ErrInvalidPath)
		wantErr(t, "rename from "+name, fsys.Rename(ctx, name, "/x"), storage.ErrInvalidPath)
		wantErr(t, "rename to "+name, fsys.Rename(ctx, "/x", name), storage.ErrInvalidPath)
		var pe *fs.PathError
		if err := fsys.Mkdir(ctx, name); !errors.As(err, &pe) {
			t.Errorf("mkdir %q: %v is not an *fs.PathError", name, err)
		}
	}
	wantList(t, fsys, "/")
}

func testMkdir(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ctx := t.Context()
	mustMkdir(t, fsys, "/d")
	if e := mustStat(t, fsys, "/d"); !e.Dir {
		t.Errorf("stat /d after mkdir: %+v", e)
	}
	mustMkdir(t, fsys, "d/nested")
	wantErr(t, "mkdir existing", fsys.Mkdir(ctx, "/d"), fs.ErrExist)
	wantErr(t, "mkdir existing with slash", fsys.Mkdir(ctx, "/d/"), fs.ErrExist)
	wantErr(t, "mkdir missing parent", fsys.Mkdir(ctx, "/nope/x"), fs.ErrNotExist)
	writeFile(t, fsys, "/f", []byte("f"))
	wantErr(t, "mkdir over a file", fsys.Mkdir(ctx, "/f"), fs.ErrExist)
	wantErr(t, "mkdir under a file", fsys.Mkdir(ctx, "/f/x"), storage.ErrNotDir, fs.ErrNotExist)
	// A directory implied by a file inside it exists too.
	mustMkdir(t, fsys, "/d/nested/implied")
	writeFile(t, fsys, "/d/nested/implied/file", []byte("x"))
	wantErr(t, "mkdir implied", fsys.Mkdir(ctx, "/d/nested/implied"), fs.ErrExist)
	wantList(t, fsys, "/", "d/", "f")
	wantList(t, fsys, "/d", "nested/")
	wantContent(t, fsys, "/f", []byte("f"))
}

func testRmdir(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ctx := t.Context()
	mustMkdir(t, fsys, "/full")
	writeFile(t, fsys, "/full/file", []byte("x"))
	mustMkdir(t, fsys, "/full/sub")
	mustMkdir(t, fsys, "/empty")
	mustMkdir(t, fsys, "/emptyish") // a sibling whose name extends "empty"
	writeFile(t, fsys, "/emptyish/file", []byte("x"))
	writeFile(t, fsys, "/file", []byte("x"))

	wantErr(t, "rmdir non-empty", fsys.Rmdir(ctx, "/full"), storage.ErrNotEmpty)
	wantErr(t, "rmdir with only a sub-directory", fsys.Rmdir(ctx, "/full/sub/.."), storage.ErrNotEmpty)
	wantErr(t, "rmdir missing", fsys.Rmdir(ctx, "/missing"), fs.ErrNotExist)
	wantErr(t, "rmdir a file", fsys.Rmdir(ctx, "/file"), storage.ErrNotDir)
	if err := fsys.Rmdir(ctx, "/empty"); err != nil {
		t.Fatalf("rmdir empty: %v", err)
	}
	wantNotExist(t, fsys, "/empty")
	if err := fsys.Rmdir(ctx, "/full/sub"); err != nil {
		t.Fatalf("rmdir empty sub: %v", err)
	}
	wantList(t, fsys, "/", "emptyish/", "file", "full/")
	wantList(t, fsys, "/full", "file")
	wantContent(t, fsys, "/emptyish/file", []byte("x"))
}

func testRemove(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ctx := t.Context()
	mustMkdir(t, fsys, "/d")
	writeFile(t, fsys, "/d/a", []byte("a"))
	writeFile(t, fsys, "/d/ab", []byte("ab"))
	if err := fsys.Remove(ctx, "/d/a"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	wantNotExist(t, fsys, "/d/a")
	wantContent(t, fsys, "/d/ab", []byte("ab"))
	wantErr(t, "remove again", fsys.Remove(ctx, "/d/a"), fs.ErrNotExist)
	wantErr(t, "remove a directory", fsys.Remove(ctx, "/d"), storage.ErrIsDir)
	wantErr(t, "remove missing", fsys.Remove(ctx, "/nothing/here"), fs.ErrNotExist)
	wantList(t, fsys, "/d", "ab")
	// The directory was made with mkdir: it stays when its last file goes.
	if err := fsys.Remove(ctx, "/d/ab"); err != nil {
		t.Fatalf("remove last: %v", err)
	}
	if e := mustStat(t, fsys, "/d"); !e.Dir {
		t.Errorf("stat /d after removing its files: %+v", e)
	}
	wantList(t, fsys, "/d")
}

func testCreateChecks(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ctx := t.Context()
	mustMkdir(t, fsys, "/d")
	writeFile(t, fsys, "/f", []byte("f"))
	// Create checks nothing in the store (an upload costs one PUT): parents are implied by the
	// key, as in S3, AWS Transfer Family and SFTPGo's S3 backend.
	writeFile(t, fsys, "/implied/x", []byte("x"))
	if e := mustStat(t, fsys, "/implied"); !e.Dir {
		t.Errorf("stat /implied after creating /implied/x: %+v", e)
	}
	_, err := fsys.Create(ctx, "/", defaultOpts)
	wantErr(t, "create /", err, storage.ErrIsDir)
	_, err = fsys.Open(ctx, "/d")
	wantErr(t, "open a directory", err, storage.ErrIsDir)
	_, err = fsys.Open(ctx, "/missing")
	wantErr(t, "open missing", err, fs.ErrNotExist)
	wantList(t, fsys, "/", "d/", "f", "implied/")
	wantList(t, fsys, "/d")
}
