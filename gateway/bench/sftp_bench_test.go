// Package bench measures the gateway against baselines taken in the same run, so ratios hold on a
// noisy machine. Run with `make bench` (it builds bin/ferry with the release flags first).
package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

const (
	partSize    = 5 << 20 // the gateway's default part size and concurrency, for a like-for-like baseline
	concurrency = 4
	aesGCM      = "aes128-gcm@openssh.com"
)

// BenchmarkSFTP runs the whole SFTP comparison once (use -benchtime 1x) and reports:
// upload MiB/s through the gateway vs the SDK's transfer manager, download MiB/s through the
// gateway vs the same SSH/SFTP stack serving from memory, small-file rate and S3 requests per
// file, and the gateway's peak RSS during the uploads.
func BenchmarkSFTP(b *testing.B) {
	size := benchSize(b)
	srv := s3test.Start(b)
	dir := b.TempDir()
	src := filepath.Join(dir, "big.bin")
	want := writeRandomFile(b, src, size)
	client := directClient(srv)

	// Baseline 1: the same bytes straight into S3 with the SDK's transfer manager, before and
	// after the gateway's uploads (the machine's disk and page cache drift during a run).
	tm := newTransferManager(client)
	direct := directUpload(b, tm, srv.Bucket, src, size)

	// Through the gateway (a separate bin/ferry process, so its RSS is its own).
	g := startGateway(b, srv, gatewayOptions{})
	uploads := func(g *gateway) map[string]float64 {
		up := map[string]float64{}
		for _, cipher := range []string{"default", aesGCM} {
			var extra []string
			if cipher != "default" {
				extra = []string{"-o", "Ciphers=" + cipher}
			}
			d := sftpBatch(b, g.sftp, g.keyFile, fmt.Sprintf("put %s /big-%s.bin\n", src, short(cipher)), extra...)
			up[cipher] = mibps(size, d)
			if got := objectSHA256(b, client, srv.Bucket, "bench/big-"+short(cipher)+".bin"); got != want {
				b.Fatalf("uploaded object sha256 %s, want %s", got, want)
			}
		}
		return up
	}
	up := uploads(g)
	peak := g.peakRSS(b)
	// The same uploads with memory_limit: 0, the other side of the default's trade.
	gu := startGateway(b, srv, gatewayOptions{noMemoryLimit: true})
	upNoLimit := uploads(gu)
	peakNoLimit := gu.peakRSS(b)
	_ = gu.cmd.Process.Kill()
	direct2 := directUpload(b, tm, srv.Bucket, src, size)
	b.Logf("direct uploads %.0f and %.0f MiB/s: the faster is the baseline", direct, direct2)
	direct = max(direct, direct2)

	// Downloads: the gateway (from S3) vs the same SFTP server code serving the bytes from memory.
	mem := startMemoryServer(b, src)
	down, memDown := map[string]float64{}, map[string]float64{}
	for _, cipher := range []string{"default", aesGCM} {
		var extra []string
		if cipher != "default" {
			extra = []string{"-o", "Ciphers=" + cipher}
		}
		dst := filepath.Join(dir, "down-"+short(cipher))
		d := sftpBatch(b, g.sftp, g.keyFile, fmt.Sprintf("get /big-%s.bin %s\n", short(cipher), dst), extra...)
		down[cipher] = mibps(size, d)
		if got := fileSHA256(b, dst); got != want {
			b.Fatalf("downloaded sha256 %s, want %s", got, want)
		}
		os.Remove(dst)
		d = sftpBatch(b, mem.addr, mem.keyFile, fmt.Sprintf("get /big.bin %s\n", dst), extra...)
		memDown[cipher] = mibps(size, d)
		os.Remove(dst)
	}

	// Small files through a gateway whose S3 traffic is counted.
	counter, proxied := startCountingProxy(b, srv.Endpoint)
	gc := startGateway(b, srv, gatewayOptions{endpoint: proxied})
	smallDir := filepath.Join(dir, "small")
	if err := os.Mkdir(smallDir, 0o755); err != nil {
		b.Fatal(err)
	}
	const nSmall = 1000
	var batch strings.Builder
	batch.WriteString("mkdir /small\n")
	for i := range nSmall {
		name := fmt.Sprintf("f%04d", i)
		writeRandomFile(b, filepath.Join(smallDir, name), 4<<10)
		fmt.Fprintf(&batch, "put %s /small/%s\n", filepath.Join(smallDir, name), name)
	}
	before := counter.snapshot()
	d := sftpBatch(b, gc.sftp, gc.keyFile, batch.String())
	after := counter.snapshot()
	filesPerSec := nSmall / d.Seconds()
	var total int
	var kinds []string
	for k, v := range after {
		if n := v - before[k]; n > 0 {
			total += n
			kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
		}
	}
	sort.Strings(kinds)
	reqPerFile := float64(total-1) / nSmall // minus the one mkdir marker PUT

	b.ReportMetric(direct, "direct-up-MiB/s")
	for _, c := range []string{"default", aesGCM} {
		s := short(c)
		b.ReportMetric(up[c], s+"-up-MiB/s")
		b.ReportMetric(up[c]/direct, s+"-up-ratio")
		b.ReportMetric(upNoLimit[c]/direct, s+"-up-nolimit-ratio")
		b.ReportMetric(down[c], s+"-down-MiB/s")
		b.ReportMetric(memDown[c], s+"-memdown-MiB/s")
		b.ReportMetric(down[c]/memDown[c], s+"-down-ratio")
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(peakNoLimit)/(1<<20), "nolimit-peak-RSS-MiB")
	b.ReportMetric(filesPerSec, "small-files/s")
	b.ReportMetric(reqPerFile, "S3-req/file")
	b.Logf("size %d MiB; direct upload %.0f MiB/s", size>>20, direct)
	for _, c := range []string{"default", aesGCM} {
		b.Logf("cipher %-22s upload %.0f MiB/s (ratio %.2f)  download %.0f MiB/s vs memory %.0f MiB/s (ratio %.2f)",
			c, up[c], up[c]/direct, down[c], memDown[c], down[c]/memDown[c])
	}
	b.Logf("gateway peak RSS during the uploads: %.1f MiB", float64(peak)/(1<<20))
	b.Logf("with memory_limit: 0: upload %.0f MiB/s (ratio %.2f) default cipher, %.0f MiB/s (ratio %.2f) %s; peak RSS %.1f MiB",
		upNoLimit["default"], upNoLimit["default"]/direct, upNoLimit[aesGCM], upNoLimit[aesGCM]/direct, aesGCM, float64(peakNoLimit)/(1<<20))
	b.Logf("%d x 4 KiB files in one session: %.0f files/s, %.2f S3 requests/file (%s)",
		nSmall, filesPerSec, reqPerFile, strings.Join(kinds, " "))
}

func short(cipher string) string {
	if cipher == aesGCM {
		return "aesgcm"
	}
	return cipher
}

func objectSHA256(b testing.TB, client *s3.Client, bucket, key string) string {
	out, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		b.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	return readerSHA256(b, out.Body)
}
