package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"

	"github.com/ferrygw/ferry/gateway/s3test"
)

// BenchmarkEmbedded measures the embedded default (bin/ferry with its own S3 endpoint, event
// bus and outbox): a 2 GiB S3-native multipart upload to the embedded endpoint (FERRY_BENCH_SIZE_MIB
// scales it ×2), its throughput, and the process's peak RSS, which must not grow with the file.
func BenchmarkEmbedded(b *testing.B) {
	size := 2 * benchSize(b)
	dir := b.TempDir()
	src := filepath.Join(dir, "big.bin")
	want := writeRandomFile(b, src, size)
	s3Addr, sftpAddr := freeAddr(b), freeAddr(b)
	write(b, filepath.Join(dir, "users.yaml"), "users: []\n")
	write(b, filepath.Join(dir, "ferry.yaml"), fmt.Sprintf(`listen:
  sftp: %q
  metrics: ""
storage:
  s3:
    bucket: ferry
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
embedded:
  s3:
    listen: %q
    data_dir: data/s3
    access_key: ferry
    secret: ferrysecret
  events:
    dir: data/events
  notifications:
    outbox: data/outbox.jsonl
log:
  level: warn
`, sftpAddr, s3Addr))
	g := &gateway{dir: dir, logs: &bytes.Buffer{}, sftp: sftpAddr}
	g.cmd = exec.Command(ferryBinary(b), "serve", "--config", filepath.Join(dir, "ferry.yaml"))
	g.cmd.Stdout, g.cmd.Stderr = g, g
	if err := g.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = g.cmd.Process.Kill()
		_ = g.cmd.Wait()
	})
	waitListening(b, s3Addr, g)
	idle := g.peakRSS(b)

	local := &s3test.Server{Endpoint: "http://" + s3Addr, Region: "us-east-1", AccessKey: "ferry", Secret: "ferrysecret", Bucket: "ferry"}
	client := local.Client()
	tm := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = partSize
		o.Concurrency = concurrency
	})
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
	peak := g.peakRSS(b)
	if got := objectSHA256(b, client, "ferry", "incoming/big.bin"); got != want {
		b.Fatalf("sha256 %s, want %s", got, want)
	}
	b.ReportMetric(up, "up-MiB/s")
	b.ReportMetric(float64(idle)/(1<<20), "idle-RSS-MiB")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	b.Logf("embedded endpoint: %d MiB S3 multipart upload at %.0f MiB/s; ferry RSS %.1f MiB at start, peak %.1f MiB",
		size>>20, up, float64(idle)/(1<<20), float64(peak)/(1<<20))
}
