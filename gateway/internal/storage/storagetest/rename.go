package storagetest

import (
	"fmt"
	"io/fs"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

func testRenameFile(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ctx := t.Context()
	data := randomData(partSize(fsys)+10, 21)
	mustMkdir(t, fsys, "/in")
	mustMkdir(t, fsys, "/out")
	writeFile(t, fsys, "/in/a.filepart", data)
	before := mustStat(t, fsys, "/in/a.filepart")
	if err := fsys.Rename(ctx, "/in/a.filepart", "/out/a"); err != nil {
		t.Fatalf("rename: %v", err)
	}
	wantNotExist(t, fsys, "/in/a.filepart")
	wantContent(t, fsys, "/out/a", data)
	if after := mustStat(t, fsys, "/out/a"); after.SHA256 != before.SHA256 {
		t.Errorf("rename lost the sha256: %q -> %q", before.SHA256, after.SHA256)
	}
	if mr, ok := fsys.(MetadataReader); ok {
		if m, err := mr.Metadata(ctx, "/out/a"); err != nil || m["user"] != defaultOpts.User {
			t.Errorf("metadata after rename: %v, %v", m, err)
		}
	}
	// Onto an existing file: replaced (what posix-rename and FTP RNTO do).
	writeFile(t, fsys, "/in/b", []byte("new"))
	if err := fsys.Rename(ctx, "/in/b", "/out/a"); err != nil {
		t.Fatalf("rename over a file: %v", err)
	}
	wantContent(t, fsys, "/out/a", []byte("new"))
	wantNotExist(t, fsys, "/in/b")

	// Names that need escaping in S3's copy source.
	odd := "/in/a+b %2f c?d#e&ü.txt"
	writeFile(t, fsys, odd, []byte("odd"))
	if err := fsys.Rename(ctx, odd, "/out/ü+ %25.txt"); err != nil {
		t.Fatalf("rename %q: %v", odd, err)
	}
	wantContent(t, fsys, "/out/ü+ %25.txt", []byte("odd"))
	wantNotExist(t, fsys, odd)
	if err := fsys.Remove(ctx, "/out/ü+ %25.txt"); err != nil {
		t.Fatal(err)
	}

	writeFile(t, fsys, "/in/c", []byte("c"))
	wantErr(t, "rename onto a directory", fsys.Rename(ctx, "/in/c", "/out"), fs.ErrExist, storage.ErrIsDir)
	wantErr(t, "rename into a missing directory", fsys.Rename(ctx, "/in/c", "/nowhere/c"), fs.ErrNotExist)
	wantErr(t, "rename missing", fsys.Rename(ctx, "/in/missing", "/out/x"), fs.ErrNotExist)
	if err := fsys.Rename(ctx, "/in/c", "/in/./c"); err != nil {
		t.Errorf("rename onto itself: %v", err)
	}
	wantContent(t, fsys, "/in/c", []byte("c"))
	wantList(t, fsys, "/in", "c")
	wantList(t, fsys, "/out", "a")
}

func testRenameDir(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ctx := t.Context()
	mustMkdir(t, fsys, "/src")
	mustMkdir(t, fsys, "/src/empty")
	mustMkdir(t, fsys, "/src/sub")
	files := map[string][]byte{
		"/src/a":          []byte("a"),
		"/src/sub/b":      []byte("bb"),
		"/src/sub/c":      randomData(partSize(fsys)+1, 4),
		"/srcsibling/not": []byte("must not move"),
	}
	mustMkdir(t, fsys, "/srcsibling")
	for name, data := range files {
		writeFile(t, fsys, name, data)
	}
	mustMkdir(t, fsys, "/dst")
	mustMkdir(t, fsys, "/taken")
	wantErr(t, "rename onto an existing directory", fsys.Rename(ctx, "/src", "/taken"), fs.ErrExist)
	wantErr(t, "rename into itself", fsys.Rename(ctx, "/src", "/src/sub/inner"), storage.ErrInvalidPath)
	if err := fsys.Rename(ctx, "/src", "/dst/moved"); err != nil {
		t.Fatalf("rename dir: %v", err)
	}
	wantNotExist(t, fsys, "/src")
	wantList(t, fsys, "/", "dst/", "srcsibling/", "taken/")
	wantList(t, fsys, "/dst/moved", "a", "empty/", "sub/")
	wantList(t, fsys, "/dst/moved/sub", "b", "c")
	wantList(t, fsys, "/dst/moved/empty")
	for name, data := range files {
		if name == "/srcsibling/not" {
			wantContent(t, fsys, name, data)
			continue
		}
		wantContent(t, fsys, "/dst/moved"+name[len("/src"):], data)
	}
}

func testRenameDirTooLarge(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	rl, ok := fsys.(RenameLimiter)
	if !ok {
		t.Skip("store has no directory rename limit")
	}
	limit := rl.MaxRenameKeys()
	if limit > 5000 {
		t.Skipf("rename limit %d too large to test quickly", limit)
	}
	mustMkdir(t, fsys, "/big")
	mustMkdir(t, fsys, "/big/sub")
	// limit keys besides the two markers: over the limit whichever way markers count.
	names := make([]string, limit)
	for i := range names {
		names[i] = fmt.Sprintf("/big/sub/f%05d", i)
	}
	writeMany(t, fsys, names)
	err := fsys.Rename(t.Context(), "/big", "/moved")
	wantErr(t, "rename past the limit", err, storage.ErrTooLarge)
	wantNotExist(t, fsys, "/moved")
	wantList(t, fsys, "/", "big/")
	if got := len(list(t, fsys, "/big/sub")); got != limit {
		t.Errorf("after the refused rename /big/sub has %d entries, want %d", got, limit)
	}
}
