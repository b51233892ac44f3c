// Package storagetest is the storage contract suite: every storage.FS implementation runs it
// from its own tests with
//
//	storagetest.Run(t, func(t *testing.T) storage.FS { ... })
//
// newFS must return a fresh, empty home on each call, and two homes returned within one test
// must be siblings in the same namespace (same bucket, different prefixes), so the jail tests
// can check that one cannot reach the other.
//
// Abilities beyond storage.FS are found by type assertion: storage.Setstater, storage.Hasher,
// storage.SpaceReporter, storage.AttrRecorder on uploads, and the interfaces below. Tests of an ability a store lacks
// say so in the log and are skipped.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// PartSizer is implemented by stores that upload in parts; the suite writes files around the
// part size. Without it the suite assumes 5 MiB.
type PartSizer interface{ PartSize() int64 }

// RenameLimiter is implemented by stores that refuse directory renames past a number of keys.
type RenameLimiter interface{ MaxRenameKeys() int }

// MetadataReader is implemented by stores that record who wrote a file. Keys: "user",
// "protocol", "client", "transfer-id", "sha256" (and "mode", "mtime" once set).
type MetadataReader interface {
	Metadata(ctx context.Context, name string) (map[string]string, error)
}

// HomePrefixer is implemented by stores whose homes are key prefixes; the jail tests use it to
// aim at the sibling home by name.
type HomePrefixer interface{ HomePrefix() string }

// Run runs the contract suite.
func Run(t *testing.T, newFS func(t *testing.T) storage.FS) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newFS func(t *testing.T) storage.FS)
	}{
		{"Root", testRoot},
		{"StatAndList", testStatAndList},
		{"InvalidPaths", testInvalidPaths},
		{"Mkdir", testMkdir},
		{"Rmdir", testRmdir},
		{"Remove", testRemove},
		{"CreateChecks", testCreateChecks},
		{"Sizes", testSizes},
		{"InvisibleUntilClose", testInvisibleUntilClose},
		{"Overwrite", testOverwrite},
		{"NoReplace", testNoReplace},
		{"RenameNoReplace", testRenameNoReplace},
		{"SetStatIfWriter", testSetStatIfWriter},
		{"Metadata", testMetadata},
		{"RecordedAttrs", testRecordedAttrs},
		{"SetStat", testSetStat},
		{"ViewsAgree", testViewsAgree},
		{"Space", testSpace},
		{"Hasher", testHasher},
		{"Abort", testAbort},
		{"CancelledContext", testCancelledContext},
		{"ReadAt", testReadAt},
		{"ReadAtOutOfOrder", testReadAtOutOfOrder},
		{"RenameFile", testRenameFile},
		{"RenameDir", testRenameDir},
		{"RenameDirTooLarge", testRenameDirTooLarge},
		{"Jail", testJail},
		{"ManyEntries", testManyEntries},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newFS) })
	}
}

func partSize(fsys storage.FS) int64 {
	if p, ok := fsys.(PartSizer); ok {
		return p.PartSize()
	}
	return 5 << 20
}

// randomData returns n reproducible pseudo-random bytes.
func randomData(n int64, seed uint64) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 1}).Read(b)
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

var defaultOpts = storage.CreateOptions{User: "suite", Protocol: "sftp", ClientAddr: "127.0.0.1:2222", TransferID: "t-suite"}

// writeFile uploads data in uneven chunks (as protocol servers hand them over) and commits.
func writeFile(t *testing.T, fsys storage.FS, name string, data []byte) {
	t.Helper()
	if err := tryWrite(t.Context(), fsys, name, data, defaultOpts); err != nil {
		t.Fatalf("write %s (%d bytes): %v", name, len(data), err)
	}
}

func tryWrite(ctx context.Context, fsys storage.FS, name string, data []byte, opts storage.CreateOptions) error {
	u, err := fsys.Create(ctx, name, opts)
	if err != nil {
		return err
	}
	if err := writeChunks(u, data); err != nil {
		_ = u.Abort(err)
		return err
	}
	return u.Close()
}

func writeChunks(w io.Writer, data []byte) error {
	for i := 0; len(data) > 0; i++ {
		n := min(len(data), 32<<10+i%7*4093)
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func readFile(t *testing.T, fsys storage.FS, name string) []byte {
	t.Helper()
	r, err := fsys.Open(t.Context(), name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	if int64(len(b)) != r.Size() {
		t.Fatalf("read %s: got %d bytes, Size() = %d", name, len(b), r.Size())
	}
	return b
}

func mustStat(t *testing.T, fsys storage.FS, name string) *storage.Entry {
	t.Helper()
	e, err := fsys.Stat(t.Context(), name)
	if err != nil {
		t.Fatalf("stat %s: %v", name, err)
	}
	return e
}

func mustMkdir(t *testing.T, fsys storage.FS, name string) {
	t.Helper()
	if err := fsys.Mkdir(t.Context(), name); err != nil {
		t.Fatalf("mkdir %s: %v", name, err)
	}
}

// wantErr fails unless err matches one of targets.
func wantErr(t *testing.T, what string, err error, targets ...error) {
	t.Helper()
	for _, target := range targets {
		if errors.Is(err, target) {
			return
		}
	}
	t.Errorf("%s: got error %v, want one of %v", what, err, targets)
}

func wantNotExist(t *testing.T, fsys storage.FS, name string) {
	t.Helper()
	e, err := fsys.Stat(t.Context(), name)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat %s: got %+v, %v; want it not to exist", name, e, err)
	}
}

func wantContent(t *testing.T, fsys storage.FS, name string, want []byte) {
	t.Helper()
	got := readFile(t, fsys, name)
	if !bytes.Equal(got, want) {
		t.Errorf("%s: content differs: got %d bytes sha256 %s, want %d bytes sha256 %s",
			name, len(got), sum(got), len(want), sum(want))
	}
	if e := mustStat(t, fsys, name); e.Size != int64(len(want)) || e.Dir {
		t.Errorf("stat %s: size %d dir %v, want size %d file", name, e.Size, e.Dir, len(want))
	}
}

// list returns dir's entries sorted by name.
func list(t *testing.T, fsys storage.FS, dir string) []*storage.Entry {
	t.Helper()
	var es []*storage.Entry
	if err := fsys.List(t.Context(), dir, func(e *storage.Entry) error {
		es = append(es, e)
		return nil
	}); err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	slices.SortFunc(es, func(a, b *storage.Entry) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return es
}

// names renders entries as "name" for files and "name/" for directories.
func names(es []*storage.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Name
		if e.Dir {
			out[i] += "/"
		}
	}
	return out
}

func wantList(t *testing.T, fsys storage.FS, dir string, want ...string) {
	t.Helper()
	got := names(list(t, fsys, dir))
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("list %s = %q, want %q", dir, got, want)
	}
}
