package storagetest

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"testing"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// testViewsAgree checks that Stat and List describe a file alike (size, modification time,
// mode) however its time came about: from the store alone, set on the open upload, set by
// SetStat afterwards, changed again, reset by an overwrite, carried by a file or directory
// rename. Sync tools compare listings with what they uploaded and re-send anything that
// differs, so the listing must show what Stat shows.
func testViewsAgree(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ctx := t.Context()
	ss, canSet := storage.As[storage.Setstater](fsys)
	ps := partSize(fsys)
	set := time.Date(2019, 8, 7, 6, 5, 4, 0, time.UTC)
	later := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	mode := fs.FileMode(0o640)
	mustMkdir(t, fsys, "/v")

	// Names that sort around each other in tricky ways (prefixes, punctuation before and after
	// '.', '/' and letters), each way of getting a time for two sizes.
	type file struct {
		name      string
		size      int64
		wantTime  *time.Time // nil: the store's own time
		wantMode  fs.FileMode
		setOnOpen bool // recorded on the open upload (fsetstat before close, `put -p`)
		setAfter  bool // SetStat after the upload (setstat, MFMT)
	}
	var files []*file
	for i, base := range []string{"plain", "-dash", ".dot", "a", "a-b", "a.b", "ab", "zz ü"} {
		for _, size := range []int64{int64(3 + i), ps + int64(i)} {
			f := &file{name: fmt.Sprintf("/v/%s-%d", base, size), size: size}
			switch i % 3 {
			case 1:
				f.setOnOpen, f.wantTime, f.wantMode = true, &set, mode
			case 2:
				f.setAfter, f.wantTime, f.wantMode = true, &set, mode
			}
			files = append(files, f)
		}
	}
	for i, f := range files {
		u, err := fsys.Create(ctx, f.name, defaultOpts)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeChunks(u, randomData(f.size, uint64(i))); err != nil {
			t.Fatal(err)
		}
		if f.setOnOpen {
			rec, ok := storage.UploadAs[storage.AttrRecorder](u)
			if !ok {
				f.setOnOpen, f.wantTime, f.wantMode = false, nil, 0
			} else {
				rec.SetAttrs(storage.Attrs{ModTime: &set, Mode: &mode})
			}
		}
		if err := u.Close(); err != nil {
			t.Fatalf("close %s: %v", f.name, err)
		}
		if f.setAfter {
			if !canSet {
				f.setAfter, f.wantTime, f.wantMode = false, nil, 0
				continue
			}
			if err := ss.SetStat(ctx, f.name, storage.Attrs{ModTime: &set, Mode: &mode}); err != nil {
				t.Fatalf("setstat %s: %v", f.name, err)
			}
		}
	}
	check := func(step string) {
		t.Helper()
		for _, f := range files {
			e := wantSameViews(t, fsys, step, f.name)
			if e == nil {
				continue
			}
			if e.Size != f.size {
				t.Errorf("%s: %s has size %d, want %d", step, f.name, e.Size, f.size)
			}
			if f.wantTime != nil && !e.ModTime.Equal(*f.wantTime) {
				t.Errorf("%s: %s has time %v, want the one set, %v", step, f.name, e.ModTime, *f.wantTime)
			}
			if f.wantTime == nil && (e.ModTime.Before(time.Now().Add(-time.Hour)) || e.ModTime.After(time.Now().Add(time.Minute))) {
				t.Errorf("%s: %s has time %v, want about now (the store's own)", step, f.name, e.ModTime)
			}
			if e.Mode != f.wantMode {
				t.Errorf("%s: %s has mode %v, want %v", step, f.name, e.Mode, f.wantMode)
			}
		}
	}
	check("after upload")
	// Directories too: made with Mkdir and implied by a file.
	mustMkdir(t, fsys, "/v/sub")
	writeFile(t, fsys, "/v/implied/f", []byte("f"))
	for _, d := range []string{"/v/sub", "/v/implied"} {
		if e := wantSameViews(t, fsys, "directories", d); e != nil && !e.Dir {
			t.Errorf("%s is not a directory: %+v", d, e)
		}
	}
	if !canSet {
		t.Log("store does not implement storage.Setstater: only upload-time attributes checked")
		return
	}

	// Changing one attribute keeps the other; a later time replaces the earlier one.
	for _, f := range files {
		if f.wantTime == nil {
			continue
		}
		if err := ss.SetStat(ctx, f.name, storage.Attrs{ModTime: &later}); err != nil {
			t.Fatal(err)
		}
		f.wantTime = &later
	}
	check("after a second setstat")

	// An overwrite without a time is a new file: the time set on the old one is gone.
	for i, f := range files {
		if f.wantTime == nil || i%2 == 1 {
			continue
		}
		f.size++
		writeFile(t, fsys, f.name, randomData(f.size, 100+uint64(i)))
		f.wantTime, f.wantMode = nil, 0
	}
	check("after overwrites")

	// A rename carries the time, as on a file system; so does moving the whole directory.
	var kept *file
	for _, f := range files {
		if f.wantTime != nil {
			kept = f
			break
		}
	}
	renamed := "/v/renamed"
	if err := fsys.Rename(ctx, kept.name, renamed); err != nil {
		t.Fatal(err)
	}
	wantNotExist(t, fsys, kept.name)
	kept.name = renamed
	check("after a file rename")
	if err := fsys.Rename(ctx, "/v", "/w"); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.name = "/w/" + path.Base(f.name)
	}
	check("after a directory rename")

	// Removing a file with a time removes it from both views.
	if err := fsys.Remove(ctx, kept.name); err != nil {
		t.Fatal(err)
	}
	wantNotExist(t, fsys, kept.name)
	for _, e := range list(t, fsys, "/w") {
		if e.Name == path.Base(kept.name) {
			t.Errorf("%s still listed after remove", kept.name)
		}
	}
}

// wantSameViews stats name and finds it in its directory's listing, fails the test where the
// two disagree on size, time, mode or kind, and returns the Stat entry (nil when missing).
func wantSameViews(t *testing.T, fsys storage.FS, step, name string) *storage.Entry {
	t.Helper()
	st, err := fsys.Stat(t.Context(), name)
	if err != nil {
		t.Errorf("%s: stat %s: %v", step, name, err)
		return nil
	}
	var le *storage.Entry
	for _, e := range list(t, fsys, path.Dir(name)) {
		if e.Name == path.Base(name) {
			le = e
		}
	}
	if le == nil {
		t.Errorf("%s: %s is not in the listing of %s", step, name, path.Dir(name))
		return st
	}
	if le.Size != st.Size || !le.Info().ModTime().Equal(st.Info().ModTime()) || le.Info().Mode() != st.Info().Mode() ||
		le.Mode != st.Mode || le.Dir != st.Dir {
		t.Errorf("%s: %s: stat says size %d time %v mode %v dir %v; listing says size %d time %v mode %v dir %v",
			step, name, st.Size, st.ModTime, st.Mode, st.Dir, le.Size, le.ModTime, le.Mode, le.Dir)
	}
	return st
}

// testSpace checks the figures a SpaceReporter gives statvfs: totals clients can divide by,
// free within total, a name limit, and statvfs(2)'s errors for a missing or invalid path.
func testSpace(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	sr, ok := storage.As[storage.SpaceReporter](fsys)
	if !ok {
		t.Skip("store does not implement storage.SpaceReporter")
	}
	ctx := t.Context()
	mustMkdir(t, fsys, "/d")
	writeFile(t, fsys, "/d/f", []byte("f"))
	for _, p := range []string{"/", "/d", "/d/f"} {
		sp, err := sr.Space(ctx, p)
		if errors.Is(err, storage.ErrUnsupported) {
			t.Skip("store cannot report space")
		}
		if err != nil {
			t.Fatalf("space %s: %v", p, err)
		}
		if sp.Total <= 0 || sp.Files <= 0 || sp.Free < 0 || sp.Free > sp.Total || sp.FreeFiles < 0 ||
			sp.FreeFiles > sp.Files || sp.MaxNameLen <= 0 {
			t.Errorf("space %s = %+v", p, sp)
		}
	}
	_, err := sr.Space(ctx, "/missing")
	wantErr(t, "space of a missing path", err, fs.ErrNotExist)
	_, err = sr.Space(ctx, "/bad\x00name")
	wantErr(t, "space of an invalid path", err, storage.ErrInvalidPath)
}
