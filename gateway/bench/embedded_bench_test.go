package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
)

// BenchmarkEmbedded measures the embedded default (bin/ferry with its own S3 endpoint, event
// bus and outbox): a 2 GiB S3-native multipart upload to the embedded endpoint (FERRY_BENCH_SIZE_MIB
// scales it ×2), its throughput, and the process's peak RSS, which must not grow with the file.
func BenchmarkEmbedded(b *testing.B) {
	size := 2 * benchSize(b)
	dir := b.TempDir()
	src := filepath.Join(dir, "big.bin")
	want := writeRandomFile(b, src, size)
	e := startEmbedded(b, embeddedOptions{})
	idle := e.peakRSS(b)
	client := e.client
	tm := newTransferManager(client)
	f, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := tm.UploadObject(context.Background(), &transfermanager.UploadObjectInput{
		Bucket: aws.String("ferry"), Key: aws.String("incoming/big.bin"), Body: f,
	}); err != nil {
		b.Fatal(err)
	}
	up := mibps(size, time.Since(start))
	f.Close()
	peak := e.peakRSS(b)
	if got := objectSHA256(b, client, "ferry", "incoming/big.bin"); got != want {
		b.Fatalf("sha256 %s, want %s", got, want)
	}
	b.ReportMetric(up, "up-MiB/s")
	b.ReportMetric(float64(idle)/(1<<20), "idle-RSS-MiB")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	b.Logf("embedded endpoint: %d MiB S3 multipart upload at %.0f MiB/s; ferry RSS %.1f MiB at start, peak %.1f MiB",
		size>>20, up, float64(idle)/(1<<20), float64(peak)/(1<<20))
}
