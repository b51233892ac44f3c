package s3store

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// listBenchFiles is the directory size the listing cost is judged by (issue 15).
const listBenchFiles = 5000

// BenchmarkList5000 lists a directory of 5,000 files on versitygw over loopback: "plain" files
// carry no stored times (S3's LastModified is the modification time), "stamped" files each had
// their time set by SetStat, as a sync tool leaves them.
func BenchmarkList5000(b *testing.B) {
	srv := s3test.Start(b)
	s, err := New(srv.Client(), Config{Bucket: srv.Bucket})
	if err != nil {
		b.Fatal(err)
	}
	fsys := s.Home("", "bench")
	ctx := b.Context()
	mtime := time.Date(2021, 6, 7, 8, 9, 10, 0, time.UTC)
	for _, dir := range []string{"plain", "stamped"} {
		names := make([]string, listBenchFiles)
		for i := range names {
			names[i] = fmt.Sprintf("/%s/file-%05d.csv", dir, i)
		}
		parallel(b, names, func(name string) error {
			key := "bench" + name
			_, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &srv.Bucket, Key: &key,
				Body: strings.NewReader(name)})
			if err != nil || dir != "stamped" {
				return err
			}
			return fsys.(storage.Setstater).SetStat(ctx, name, storage.Attrs{ModTime: &mtime})
		})
	}
	for _, dir := range []string{"plain", "stamped"} {
		b.Run(dir, func(b *testing.B) {
			for b.Loop() {
				n := 0
				if err := fsys.List(ctx, "/"+dir, func(e *storage.Entry) error {
					n++
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				if n != listBenchFiles {
					b.Fatalf("listed %d entries, want %d", n, listBenchFiles)
				}
			}
		})
	}
}

// parallel runs fn over names with 8 workers and fails b on the first error.
func parallel(b *testing.B, names []string, fn func(string) error) {
	b.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	ch := make(chan string)
	for range 8 {
		wg.Go(func() {
			for n := range ch {
				if err := fn(n); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%s: %w", n, err)
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
		b.Fatal(first)
	}
}
