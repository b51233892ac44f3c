package storagetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// manyFiles is enough for several ListObjectsV2 pages of 1000 keys.
const manyFiles = 2500

func testManyEntries(t *testing.T, newFS func(t *testing.T) storage.FS) {
	fsys := newFS(t)
	mustMkdir(t, fsys, "/many")
	var want []string
	for i := range manyFiles {
		want = append(want, fmt.Sprintf("/many/f%05d", i))
	}
	// Sub-directories sort between the files, on different pages.
	for _, d := range []string{"/many/f00999d", "/many/f02000d", "/many/zz"} {
		mustMkdir(t, fsys, d)
		writeFile(t, fsys, d+"/inner", []byte("i"))
	}
	writeMany(t, fsys, want)
	var got []string
	seen := map[string]bool{}
	err := fsys.List(t.Context(), "/many", func(e *storage.Entry) error {
		name := e.Name
		if e.Dir {
			name += "/"
		}
		if seen[name] {
			return fmt.Errorf("%s listed twice", name)
		}
		seen[name] = true
		got = append(got, name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"f00999d/", "f02000d/", "zz/"}
	for _, w := range want {
		wantNames = append(wantNames, w[len("/many/"):])
	}
	slices.Sort(wantNames)
	slices.Sort(got)
	if !slices.Equal(got, wantNames) {
		t.Fatalf("listed %d entries, want %d", len(got), len(wantNames))
	}
}

// writeMany writes small files concurrently (bounded).
func writeMany(t *testing.T, fsys storage.FS, names []string) {
	t.Helper()
	const workers = 8
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	ch := make(chan string)
	for range workers {
		wg.Go(func() {
			for name := range ch {
				if err := tryWrite(t.Context(), fsys, name, []byte(name), defaultOpts); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("write %s: %w", name, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, n := range names {
		ch <- n
	}
	close(ch)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}
