package transform

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// unzip emits each file entry of a zip archive as its own output, named by its path inside the
// archive (directories are skipped). A zip's directory is at its end and entries are read by
// offset (io.ReaderAt), so the archive is first spooled to a temporary file, bounded by
// max_bytes, and removed when Apply returns; memory stays constant, disk use is bounded.
//
// Bad archives are Rejections: not a zip, an entry name that is absolute or climbs out with
// "..", more than max_entries entries, an entry over max_entry_bytes, an entry expanding more
// than max_ratio times its compressed size, or a total over max_total_bytes (zip bombs). The
// sizes are checked against the headers first and enforced while reading, since headers can lie.
//
// Options: max_bytes (archive, default 4GiB), max_entries (default 10000), max_entry_bytes
// (default 8GiB), max_total_bytes (default 16GiB), max_ratio (default DefaultMaxRatio), temp_dir
// (default os.TempDir()). Sizes take units ("1GiB") or a number of bytes. On Lambda the spool
// lives in /tmp, whose ephemeral storage (512MB unless the function asks for more) must hold
// max_bytes.
type unzip struct {
	maxBytes, maxEntries, maxEntry, maxTotal, maxRatio int64
	tempDir                                            string
}

func newUnzip(o *Options) (Transform, error) {
	t := &unzip{
		maxBytes:   o.Size("max_bytes", 4<<30),
		maxEntries: o.Int("max_entries", 10000),
		maxEntry:   o.Size("max_entry_bytes", 8<<30),
		maxTotal:   o.Size("max_total_bytes", 16<<30),
		maxRatio:   o.Int("max_ratio", DefaultMaxRatio),
		tempDir:    o.String("temp_dir", ""),
	}
	if t.maxBytes <= 0 || t.maxEntries <= 0 || t.maxEntry <= 0 || t.maxTotal <= 0 || t.maxRatio <= 0 {
		return nil, errors.New("options max_*: must be positive")
	}
	return t, nil
}

func (t *unzip) Apply(ctx context.Context, in File, emit func(File) error) (err error) {
	f, err := os.CreateTemp(t.tempDir, "ferry-unzip-*")
	if err != nil {
		return fmt.Errorf("unzip: spool: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	size, err := io.Copy(f, &stage{ctx: ctx, r: io.LimitReader(in.Body, t.maxBytes+1)})
	if err != nil {
		return fmt.Errorf("unzip: spool: %w", err)
	}
	if size > t.maxBytes {
		return reject(0, "zip: archive larger than %d bytes", t.maxBytes)
	}
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return reject(0, "zip: %v", err)
	}
	if int64(len(zr.File)) > t.maxEntries {
		return reject(0, "zip: %d entries, at most %d allowed", len(zr.File), t.maxEntries)
	}
	// Check every header before emitting anything, so a bad archive emits nothing.
	var total uint64
	for _, e := range zr.File {
		if err := t.checkEntry(e); err != nil {
			return err
		}
		total += e.UncompressedSize64
	}
	if total > uint64(t.maxTotal) {
		return reject(0, "zip: entries total %d bytes, at most %d allowed", total, t.maxTotal)
	}
	budget := t.maxTotal
	for _, e := range zr.File {
		if e.FileInfo().IsDir() {
			continue
		}
		if err := t.emitEntry(ctx, e, &budget, emit); err != nil {
			return err
		}
	}
	return nil
}

func (t *unzip) checkEntry(e *zip.File) error {
	name := e.Name
	clean := path.Clean(name)
	if name == "" || strings.ContainsAny(name, "\\\x00") || path.IsAbs(name) || clean == ".." || strings.HasPrefix(clean, "../") ||
		(len(name) > 1 && name[1] == ':') {
		return reject(0, "zip: unsafe entry name %q", name)
	}
	if e.UncompressedSize64 > uint64(t.maxEntry) {
		return reject(0, "zip: entry %q is %d bytes, at most %d allowed", name, e.UncompressedSize64, t.maxEntry)
	}
	if c := e.CompressedSize64; e.UncompressedSize64 > 1<<20 && (c == 0 || e.UncompressedSize64/c > uint64(t.maxRatio)) {
		return reject(0, "zip: entry %q expands %d -> %d bytes, more than %dx (zip bomb?)", name, c, e.UncompressedSize64, t.maxRatio)
	}
	return nil
}

func (t *unzip) emitEntry(ctx context.Context, e *zip.File, budget *int64, emit func(File) error) error {
	rc, err := e.Open()
	if err != nil {
		return reject(0, "zip: entry %q: %v", e.Name, err)
	}
	defer rc.Close()
	limit := min(int64(e.UncompressedSize64), *budget)
	r := &entryReader{r: rc, name: e.Name, left: limit}
	err = emitOne(ctx, path.Clean(e.Name), r, emit)
	*budget -= limit - r.left
	return err
}

// entryReader enforces the entry's declared size (archive/zip checks it too, but the total
// budget is ours) and turns format errors into Rejections.
type entryReader struct {
	r    io.Reader
	name string
	left int64
}

func (e *entryReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		// At the limit the entry must end; this read also makes archive/zip check the CRC.
		var one [1]byte
		n, err := e.r.Read(one[:])
		switch {
		case n > 0:
			return 0, reject(0, "zip: entry %q is larger than its header or the size budget", e.name)
		case err == nil || err == io.EOF:
			return 0, io.EOF
		default:
			return 0, reject(0, "zip: entry %q: %v", e.name, err)
		}
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err != nil && err != io.EOF {
		err = reject(0, "zip: entry %q: %v", e.name, err)
	}
	return n, err
}
