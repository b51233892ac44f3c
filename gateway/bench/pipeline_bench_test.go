package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// BenchmarkPipelineLatency measures, in the embedded default (bin/ferry with the shipped
// configs/pipeline.yaml), the time from an upload's close (PutObject returning) to its
// notification in the outbox: 500 CSV files of 1 MiB at 20 files/s (FERRY_BENCH_FILES
// overrides the count). Reports p50 and p99.
func BenchmarkPipelineLatency(b *testing.B) {
	n := 500
	if v := os.Getenv("FERRY_BENCH_FILES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	routes, err := filepath.Abs("../../configs/pipeline.yaml")
	if err != nil {
		b.Fatal(err)
	}
	e := startEmbedded(b, embeddedOptions{routes: routes})
	dir, client := e.dir, e.client

	// 1 MiB of CSV.
	var csv bytes.Buffer
	csv.WriteString("id,name,qty,price\n")
	for i := 0; csv.Len() < 1<<20; i++ {
		fmt.Fprintf(&csv, "%d,item-%d,%d,%d.%02d\n", i, i, i%97, i%1000, i%100)
	}
	body := csv.Bytes()

	var mu sync.Mutex
	closed := map[string]time.Time{}
	tail := tailOutbox(filepath.Join(dir, "data", "outbox.jsonl"))

	ctx := context.Background()
	tick := time.NewTicker(50 * time.Millisecond) // 20 files/s
	defer tick.Stop()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		<-tick.C
		key := fmt.Sprintf("incoming/bench/f%04d.csv", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("ferry"), Key: aws.String(key), Body: bytes.NewReader(body)})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			closed[key] = time.Now()
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if got := tail.notified(); got >= n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d notifications after 2 minutes\n%s", tail.notified(), n, e.gateway)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tail.Close()
	var lat []time.Duration
	for key, c := range closed {
		lat = append(lat, tail.first[key].Sub(c))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[(len(lat)*99)/100]
	b.ReportMetric(float64(p50.Milliseconds()), "p50-ms")
	b.ReportMetric(float64(p99.Milliseconds()), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max-ms")
	b.Logf("%d files of 1 MiB at 20/s: upload close -> notification p50 %v, p99 %v, max %v",
		n, p50.Round(time.Millisecond), p99.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
}
