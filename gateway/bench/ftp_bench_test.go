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

	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// BenchmarkFTP compares 1 GiB uploads and downloads with curl through the gateway's FTP server
// (plain FTP on loopback, extended passive) against the SDK's transfer manager straight to S3,
// same run, same S3 server, and reports the gateway's peak RSS.
func BenchmarkFTP(b *testing.B) {
	testtool.Path(b, "curl")
	size := benchSize(b)
	srv := s3test.Start(b)
	dir := b.TempDir()
	src := filepath.Join(dir, "big.bin")
	want := writeRandomFile(b, src, size)
	ctx := context.Background()
	client := directClient(srv)
	tm := newTransferManager(client)
	directUp := directUpload(b, tm, srv.Bucket, src, size)

	dst, err := os.Create(filepath.Join(dir, "direct-down"))
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := tm.DownloadObject(ctx, &transfermanager.DownloadObjectInput{
		Bucket: aws.String(srv.Bucket), Key: aws.String("direct/big.bin"), WriterAt: dst,
	}); err != nil {
		b.Fatal(err)
	}
	directDown := mibps(size, time.Since(start))
	dst.Close()
	if got := fileSHA256(b, dst.Name()); got != want {
		b.Fatalf("direct download sha256 %s, want %s", got, want)
	}
	os.Remove(dst.Name())

	g := startGateway(b, srv, gatewayOptions{ftp: true})
	url := fmt.Sprintf("ftp://%s/big.bin", g.ftp)
	start = time.Now()
	curl(b, "-T", src, url)
	up := mibps(size, time.Since(start))
	if got := objectSHA256(b, client, srv.Bucket, "bench/big.bin"); got != want {
		b.Fatalf("FTP upload sha256 %s, want %s", got, want)
	}
	peak := g.peakRSS(b)
	directUp2 := directUpload(b, tm, srv.Bucket, src, size)
	b.Logf("direct uploads %.0f and %.0f MiB/s: the faster is the baseline", directUp, directUp2)
	directUp = max(directUp, directUp2)
	out := filepath.Join(dir, "ftp-down")
	start = time.Now()
	curl(b, "-o", out, url)
	down := mibps(size, time.Since(start))
	if got := fileSHA256(b, out); got != want {
		b.Fatalf("FTP download sha256 %s, want %s", got, want)
	}

	b.ReportMetric(directUp, "direct-up-MiB/s")
	b.ReportMetric(up, "ftp-up-MiB/s")
	b.ReportMetric(up/directUp, "ftp-up-ratio")
	b.ReportMetric(directDown, "direct-down-MiB/s")
	b.ReportMetric(down, "ftp-down-MiB/s")
	b.ReportMetric(down/directDown, "ftp-down-ratio")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	b.Logf("size %d MiB; FTP upload %.0f MiB/s vs direct %.0f (ratio %.2f); download %.0f vs direct %.0f (ratio %.2f); gateway peak RSS %.1f MiB",
		size>>20, up, directUp, up/directUp, down, directDown, down/directDown, float64(peak)/(1<<20))
}

func curl(b testing.TB, args ...string) {
	full := append([]string{"-sS", "--fail", "--ftp-pasv", "--user", "bench:" + benchPassword}, args...)
	cmd := exec.Command("curl", full...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		b.Fatalf("curl %v: %v\n%s", args, err, out.String())
	}
}
