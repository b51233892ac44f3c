package storagetest

import (
	"bytes"
	"errors"
	"io/fs"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// testNoReplace: an upload with NoReplace commits to a free name, and fails at Close with
// fs.ErrExist, keeping the other file, when the name was taken during the upload, whether it
// was small or over a part.
func testNoReplace(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ctx := t.Context()
	part := partSize(fsys)
	for _, size := range []int64{3, part + 3} {
		mine := bytes.Repeat([]byte{'m'}, int(size))
		up, err := fsys.Create(ctx, "/late", storage.CreateOptions{User: "u", NoReplace: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.Write(mine); err != nil {
			t.Fatal(err)
		}
		writeFile(t, fsys, "/late", []byte("theirs"))
		if err := up.Close(); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("size %d: Close = %v, want fs.ErrExist", size, err)
		}
		if got := readFile(t, fsys, "/late"); string(got) != "theirs" {
			t.Fatalf("size %d: the file holds %d bytes, want the other writer's", size, len(got))
		}
		if err := fsys.Remove(ctx, "/late"); err != nil {
			t.Fatal(err)
		}
	}
	up, err := fsys.Create(ctx, "/free", storage.CreateOptions{User: "u", NoReplace: true})
	if err != nil {
		t.Fatal(err)
	}
	up.Write([]byte("mine"))
	if err := up.Close(); err != nil {
		t.Fatalf("NoReplace upload to a free name: %v", err)
	}
}

// testRenameNoReplace: RenameNoReplace moves a file or a directory to a free name, and refuses
// with fs.ErrExist, moving nothing, when a file is at the destination.
func testRenameNoReplace(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	nr, ok := storage.As[storage.NoReplaceRenamer](fsys)
	if !ok {
		t.Skip("the store has no RenameNoReplace")
	}
	ctx := t.Context()
	writeFile(t, fsys, "/a", []byte("a"))
	writeFile(t, fsys, "/taken", []byte("taken"))
	if err := nr.RenameNoReplace(ctx, "/a", "/taken"); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("RenameNoReplace onto a file = %v, want fs.ErrExist", err)
	}
	if string(readFile(t, fsys, "/taken")) != "taken" || string(readFile(t, fsys, "/a")) != "a" {
		t.Fatal("a refused RenameNoReplace changed a file")
	}
	if err := nr.RenameNoReplace(ctx, "/a", "/b"); err != nil {
		t.Fatalf("RenameNoReplace to a free name: %v", err)
	}
	if string(readFile(t, fsys, "/b")) != "a" {
		t.Fatal("the moved file lost its content")
	}
	if err := fsys.Mkdir(ctx, "/d"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, fsys, "/d/x", []byte("x"))
	if err := nr.RenameNoReplace(ctx, "/d", "/e"); err != nil {
		t.Fatalf("RenameNoReplace of a directory: %v", err)
	}
	if string(readFile(t, fsys, "/e/x")) != "x" {
		t.Fatal("the moved directory lost its file")
	}
}

// testSetStatIfWriter: SetStatIfWriter records attributes on a file the user uploaded, and
// refuses with fs.ErrPermission, recording nothing, on another user's.
func testSetStatIfWriter(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ws, ok := storage.As[storage.WriterSetstater](fsys)
	if !ok {
		t.Skip("the store has no SetStatIfWriter")
	}
	ctx := t.Context()
	for name, user := range map[string]string{"/mine": "me", "/theirs": "them"} {
		up, err := fsys.Create(ctx, name, storage.CreateOptions{User: user})
		if err != nil {
			t.Fatal(err)
		}
		up.Write([]byte(name))
		if err := up.Close(); err != nil {
			t.Fatal(err)
		}
	}
	mode := fs.FileMode(0o600)
	if err := ws.SetStatIfWriter(ctx, "/mine", storage.Attrs{Mode: &mode}, "me"); err != nil {
		t.Fatalf("on the user's own file: %v", err)
	}
	if e, err := fsys.Stat(ctx, "/mine"); err != nil || e.Mode != mode {
		t.Fatalf("own file after SetStatIfWriter: %+v, %v", e, err)
	}
	if err := ws.SetStatIfWriter(ctx, "/theirs", storage.Attrs{Mode: &mode}, "me"); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("on another user's file: %v, want fs.ErrPermission", err)
	}
	if e, err := fsys.Stat(ctx, "/theirs"); err != nil || e.Mode == mode {
		t.Fatalf("another user's file changed: %+v, %v", e, err)
	}
}
