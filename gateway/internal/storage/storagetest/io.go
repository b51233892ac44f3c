package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

func testSizes(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ps := partSize(fsys)
	sizes := []struct {
		name string
		size int64
	}{
		{"empty", 0}, {"one", 1}, {"part-1", ps - 1}, {"part", ps}, {"part+1", ps + 1},
		{"multipart", 2*ps + 12345},
	}
	meta, _ := fsys.(MetadataReader)
	for i, sz := range sizes {
		t.Run(sz.name, func(t *testing.T) {
			data := randomData(sz.size, uint64(i))
			name := "/" + sz.name + ".bin"
			writeFile(t, fsys, name, data)
			wantContent(t, fsys, name, data)
			e := mustStat(t, fsys, name)
			if e.SHA256 != "" && e.SHA256 != sum(data) {
				t.Errorf("stat: sha256 %s, want %s", e.SHA256, sum(data))
			}
			if meta != nil && e.SHA256 == "" {
				t.Errorf("stat: no sha256 recorded")
			}
			if h, ok := storage.As[storage.Hasher](fsys); ok {
				if got, err := h.SHA256(t.Context(), name); err != nil || got != sum(data) {
					t.Errorf("SHA256() = %s, %v; want %s", got, err, sum(data))
				}
			}
		})
	}
}

func testInvisibleUntilClose(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	data := randomData(partSize(fsys)+100, 7)
	u, err := fsys.Create(t.Context(), "/pending", defaultOpts)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeChunks(u, data); err != nil {
		t.Fatal(err)
	}
	wantNotExist(t, fsys, "/pending")
	wantList(t, fsys, "/")
	if err := u.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	wantContent(t, fsys, "/pending", data)
	if err := u.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := u.Write([]byte("more")); err == nil {
		t.Errorf("write after close succeeded")
	}
	if err := u.Abort(errors.New("late")); err != nil {
		t.Errorf("abort after close: %v", err)
	}
	wantContent(t, fsys, "/pending", data)
}

func testOverwrite(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	small, big := []byte("version one"), randomData(partSize(fsys)+3, 3)
	writeFile(t, fsys, "/f", small)
	writeFile(t, fsys, "/f", big)
	wantContent(t, fsys, "/f", big)
	writeFile(t, fsys, "/f", small)
	wantContent(t, fsys, "/f", small)
	if e := mustStat(t, fsys, "/f"); e.SHA256 != "" && e.SHA256 != sum(small) {
		t.Errorf("sha256 after overwrite: %s, want %s", e.SHA256, sum(small))
	}
}

func testMetadata(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	mr, ok := fsys.(MetadataReader)
	if !ok {
		t.Skip("store does not implement storagetest.MetadataReader")
	}
	opts := storage.CreateOptions{User: "dïana", Protocol: "ftps", ClientAddr: "[::1]:50000", TransferID: "tr-42"}
	for _, size := range []int64{5, partSize(fsys) + 1} {
		name := fmt.Sprintf("/meta-%d", size)
		data := randomData(size, 11)
		if err := tryWrite(t.Context(), fsys, name, data, opts); err != nil {
			t.Fatal(err)
		}
		m, err := mr.Metadata(t.Context(), name)
		if err != nil {
			t.Fatalf("metadata %s: %v", name, err)
		}
		want := map[string]string{"user": opts.User, "protocol": opts.Protocol, "client": opts.ClientAddr,
			"transfer-id": opts.TransferID, "sha256": sum(data)}
		for k, v := range want {
			if m[k] != v {
				t.Errorf("%s: metadata %s = %q, want %q (all: %v)", name, k, m[k], v, m)
			}
		}
	}
	mustMkdir(t, fsys, "/dir")
	_, err := mr.Metadata(t.Context(), "/dir")
	wantErr(t, "metadata of a directory", err, storage.ErrIsDir)
	_, err = mr.Metadata(t.Context(), "/missing")
	wantErr(t, "metadata of a missing file", err, fs.ErrNotExist)
}

// testRecordedAttrs covers fsetstat on the open file (`put -p`): stored at commit.
func testRecordedAttrs(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	mode := fs.FileMode(0o640)
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 890000000, time.UTC)
	for _, size := range []int64{3, partSize(fsys) + 1} {
		name := fmt.Sprintf("/attrs-%d", size)
		u, err := fsys.Create(t.Context(), name, defaultOpts)
		if err != nil {
			t.Fatal(err)
		}
		rec, ok := storage.UploadAs[storage.AttrRecorder](u)
		if !ok {
			_ = u.Abort(nil)
			t.Skip("uploads do not implement storage.AttrRecorder")
		}
		data := randomData(size, 5)
		if err := writeChunks(u, data); err != nil {
			t.Fatal(err)
		}
		rec.SetAttrs(storage.Attrs{Mode: &mode})
		rec.SetAttrs(storage.Attrs{ModTime: &mtime}) // a later call keeps the earlier fields
		if err := u.Close(); err != nil {
			t.Fatal(err)
		}
		e := mustStat(t, fsys, name)
		if e.Mode != mode || !e.ModTime.Equal(mtime) {
			t.Errorf("%s: mode %v mtime %v, want %v %v", name, e.Mode, e.ModTime, mode, mtime)
		}
		if e.Info().Mode() != mode {
			t.Errorf("%s: Info().Mode() = %v, want %v", name, e.Info().Mode(), mode)
		}
		wantContent(t, fsys, name, data)
	}
}

func testSetStat(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ss, ok := storage.As[storage.Setstater](fsys)
	if !ok {
		t.Skip("store does not implement storage.Setstater")
	}
	ctx := t.Context()
	for _, size := range []int64{4, partSize(fsys) + 2} {
		name := fmt.Sprintf("/f-%d", size)
		data := randomData(size, 9)
		writeFile(t, fsys, name, data)
		before := mustStat(t, fsys, name)
		mode := fs.FileMode(0o600)
		mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		if err := ss.SetStat(ctx, name, storage.Attrs{Mode: &mode}); err != nil {
			t.Fatalf("setstat mode: %v", err)
		}
		if err := ss.SetStat(ctx, name, storage.Attrs{ModTime: &mtime}); err != nil {
			t.Fatalf("setstat mtime: %v", err)
		}
		e := mustStat(t, fsys, name)
		if e.Mode != mode || !e.ModTime.Equal(mtime) {
			t.Errorf("%s after setstat: mode %v mtime %v, want %v %v", name, e.Mode, e.ModTime, mode, mtime)
		}
		if e.SHA256 != before.SHA256 || e.Size != before.Size {
			t.Errorf("%s: setstat changed sha256/size: %+v -> %+v", name, before, e)
		}
		wantContent(t, fsys, name, data)
	}
	mustMkdir(t, fsys, "/dir")
	mode := fs.FileMode(0o700)
	if err := ss.SetStat(ctx, "/dir", storage.Attrs{Mode: &mode}); err != nil {
		t.Errorf("setstat on a directory: %v", err)
	}
	if err := ss.SetStat(ctx, "/", storage.Attrs{Mode: &mode}); err != nil {
		t.Errorf("setstat on the home: %v", err)
	}
	wantErr(t, "setstat missing", ss.SetStat(ctx, "/missing", storage.Attrs{Mode: &mode}), fs.ErrNotExist)
}

func testHasher(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	h, ok := storage.As[storage.Hasher](fsys)
	if !ok {
		t.Skip("store does not implement storage.Hasher")
	}
	mustMkdir(t, fsys, "/dir")
	_, err := h.SHA256(t.Context(), "/dir")
	wantErr(t, "sha256 of a directory", err, storage.ErrIsDir)
	_, err = h.SHA256(t.Context(), "/missing")
	wantErr(t, "sha256 of a missing file", err, fs.ErrNotExist)
}

func testAbort(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ps := partSize(fsys)
	old := []byte("the old content")
	writeFile(t, fsys, "/existing", old)
	for _, tt := range []struct {
		name string
		size int64
	}{{"/small", 10}, {"/multipart", 2*ps + 5}, {"/existing", 2*ps + 5}, {"/nothing", 0}} {
		u, err := fsys.Create(t.Context(), tt.name, defaultOpts)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeChunks(u, randomData(tt.size, 1)); err != nil {
			t.Fatal(err)
		}
		cause := errors.New("client went away")
		if err := u.Abort(cause); err != nil {
			t.Errorf("abort %s: %v", tt.name, err)
		}
		wantErr(t, "close after abort", u.Close(), storage.ErrAborted)
		wantErr(t, "close again after abort", u.Close(), storage.ErrAborted)
		if _, err := u.Write([]byte("x")); err == nil {
			t.Errorf("write after abort succeeded")
		}
		if err := u.Abort(cause); err != nil {
			t.Errorf("second abort: %v", err)
		}
	}
	wantNotExist(t, fsys, "/small")
	wantNotExist(t, fsys, "/multipart")
	wantNotExist(t, fsys, "/nothing")
	wantContent(t, fsys, "/existing", old)
	wantList(t, fsys, "/", "existing")
}

func testCancelledContext(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	ps := partSize(fsys)
	for _, tt := range []struct {
		name        string
		before      int64 // bytes written before cancel
		writeAfter  bool
		cancelFirst bool
	}{
		{name: "/cancel-small", before: 100},
		{name: "/cancel-multipart", before: 2*ps + 1},
		{name: "/cancel-then-write", before: ps + 1, writeAfter: true},
		{name: "/cancel-at-once", cancelFirst: true},
	} {
		ctx, cancel := context.WithCancel(t.Context())
		u, err := fsys.Create(ctx, tt.name, defaultOpts)
		if err != nil {
			t.Fatal(err)
		}
		if tt.cancelFirst {
			cancel()
		}
		_ = writeChunks(u, randomData(tt.before, 2))
		cancel()
		if tt.writeAfter {
			deadline := time.Now().Add(10 * time.Second)
			var werr error
			for werr == nil && time.Now().Before(deadline) {
				_, werr = u.Write(make([]byte, 64<<10))
			}
			if werr == nil {
				t.Errorf("%s: writes still accepted 10s after cancel", tt.name)
			}
		}
		if err := u.Close(); err == nil {
			t.Errorf("%s: close after cancel succeeded", tt.name)
		}
		wantNotExist(t, fsys, tt.name)
	}
	wantList(t, fsys, "/")
}

func testReadAt(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	size := 2*partSize(fsys) + 777
	data := randomData(size, 13)
	writeFile(t, fsys, "/r", data)
	r, err := fsys.Open(t.Context(), "/r")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != size {
		t.Fatalf("Size() = %d, want %d", r.Size(), size)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		var off int64
		switch i % 3 {
		case 0:
			off = rng.Int64N(size)
		case 1: // near the end
			off = size - rng.Int64N(min(size, 70000)) - 1
		case 2: // near the start
			off = rng.Int64N(70000)
		}
		n := rng.IntN(200000) + 1
		buf := make([]byte, n)
		got, err := r.ReadAt(buf, off)
		want := data[off:min(off+int64(n), size)]
		if got != len(want) || !bytes.Equal(buf[:got], want) {
			t.Fatalf("ReadAt(%d bytes, %d) = %d bytes (equal %v), want %d", n, off, got, bytes.Equal(buf[:got], want), len(want))
		}
		if off+int64(n) > size && err != io.EOF {
			t.Fatalf("ReadAt past the end: err %v, want io.EOF", err)
		}
		if off+int64(n) <= size && err != nil {
			t.Fatalf("ReadAt(%d, %d): %v", n, off, err)
		}
	}
	if n, err := r.ReadAt(make([]byte, 10), size); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at the end = %d, %v; want 0, EOF", n, err)
	}
	// Seek and Read work together with ReadAt.
	if _, err := r.Seek(size-10, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(tail, data[size-10:]) {
		t.Errorf("read after seek: %d bytes, %v", len(tail), err)
	}
	if pos, err := r.Seek(-5, io.SeekCurrent); err != nil || pos != size-5 {
		t.Errorf("seek current: %d, %v", pos, err)
	}
	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Errorf("seek before the start succeeded")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadAt(make([]byte, 1), 0); err == nil {
		t.Errorf("read after close succeeded")
	}
	// An empty file reads as EOF at once.
	writeFile(t, fsys, "/empty", nil)
	if got := readFile(t, fsys, "/empty"); len(got) != 0 {
		t.Errorf("empty file read %d bytes", len(got))
	}
}

// testReadAtOutOfOrder reads a file the way SFTP servers do: several workers, fixed-size
// requests, offsets arriving a little out of order.
func testReadAtOutOfOrder(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	size := 3*partSize(fsys) + 4321
	data := randomData(size, 17)
	writeFile(t, fsys, "/ooo", data)
	r, err := fsys.Open(t.Context(), "/ooo")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const chunk, workers = 32 << 10, 8
	offsets := make(chan int64)
	go func() {
		defer close(offsets)
		// Windows of 16 requests, shuffled inside each window.
		rng := rand.New(rand.NewPCG(3, 4))
		for base := int64(0); base < size; base += 16 * chunk {
			var win []int64
			for off := base; off < min(size, base+16*chunk); off += chunk {
				win = append(win, off)
			}
			rng.Shuffle(len(win), func(i, j int) { win[i], win[j] = win[j], win[i] })
			for _, off := range win {
				offsets <- off
			}
		}
	}()
	got := make([]byte, size)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			buf := make([]byte, chunk)
			for off := range offsets {
				n, err := r.ReadAt(buf, off)
				if err != nil && !(err == io.EOF && off+int64(n) == size) {
					errs <- fmt.Errorf("ReadAt(%d): %d, %w", off, n, err)
					for range offsets {
					}
					return
				}
				copy(got[off:], buf[:n])
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("out-of-order reads assembled a different file (sha256 %s, want %s)", sum(got), sum(data))
	}
}
