package bench

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrygw/ferry/gateway/ferryproc"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// BenchmarkSFTPConcurrent runs N concurrent OpenSSH sftp uploads (default cipher) of 1 GiB in
// total (1 GiB/N each) through one gateway with the default config, for N = 1, 10 and 50, and
// reports the gateway's CPU-seconds per GiB (utime+stime from /proc), the aggregate MiB/s and
// the peak RSS during each round. CPU per GiB at N = 10 and 50 should stay within 1.2x of
// N = 1: transfer memory is a bounded, pooled budget and the GC's limit follows it, so more
// transfers at once do not make the collector work harder per byte.
func BenchmarkSFTPConcurrent(b *testing.B) {
	size := benchSize(b)
	srv := s3test.Start(b)
	dir := b.TempDir()
	g := startGateway(b, srv, gatewayOptions{})
	pid := g.cmd.Process.Pid
	var base float64
	for _, n := range []int{1, 10, 50} {
		each := size / int64(n)
		var files []string
		for i := range n {
			p := filepath.Join(dir, fmt.Sprintf("n%d-%d.bin", n, i))
			writeRandomFile(b, p, each)
			files = append(files, p)
		}
		rss := ferryproc.SampleRSS(pid, 20*time.Millisecond)
		cpu0 := procCPU(b, pid)
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i, f := range files {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := sftpPut(g.sftp, g.keyFile, f, fmt.Sprintf("/conc-%d-%d.bin", n, i)); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		took := time.Since(start)
		cpu := procCPU(b, pid) - cpu0
		peak := rss.Stop()
		gib := float64(each*int64(n)) / (1 << 30)
		perGiB := cpu.Seconds() / gib
		if n == 1 {
			base = perGiB
		}
		b.ReportMetric(perGiB, fmt.Sprintf("N%d-cpu-s/GiB", n))
		b.ReportMetric(perGiB/base, fmt.Sprintf("N%d-cpu-ratio", n))
		b.ReportMetric(mibps(each*int64(n), took), fmt.Sprintf("N%d-MiB/s", n))
		b.ReportMetric(float64(peak)/(1<<20), fmt.Sprintf("N%d-peak-RSS-MiB", n))
		b.Logf("N=%d x %d MiB: %.2f CPU-s/GiB (%.2fx N=1), %.0f MiB/s aggregate, peak RSS %.1f MiB",
			n, each>>20, perGiB, perGiB/base, mibps(each*int64(n), took), float64(peak)/(1<<20))
		for _, f := range files {
			os.Remove(f)
		}
	}
}

// sftpPut uploads src to dst with OpenSSH sftp (its default cipher).
func sftpPut(addr, keyFile, src, dst string) error {
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("sftp", "-q", "-b", "-", "-P", port, "-i", keyFile,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "bench@"+host)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("put %s %s\n", src, dst))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("sftp put %s: %v\n%s", dst, err, out.String())
	}
	return nil
}

// procCPU is the process's user+system CPU time (fields 14 and 15 of /proc/PID/stat).
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) may hold spaces; fields are counted after its ')'.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}
