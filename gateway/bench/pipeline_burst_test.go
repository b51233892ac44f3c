package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// BenchmarkPipelineBurst is a busy day through the embedded default (bin/ferry with the shipped
// configs/pipeline.yaml): 20 SFTP sessions upload 5,000 small CSVs (FERRY_BENCH_FILES overrides
// the count) as fast as they can. It reports the files per second end to end (first upload
// started to last notification), p50/p99/max of upload close -> notification, and fails unless
// every file has exactly one output and exactly one notification. FERRY_BENCH_PROFILE=file
// writes a CPU profile of bin/ferry over the first FERRY_BENCH_PROFILE_SECONDS (default 15) of
// the burst: go tool pprof bin/ferry file. FERRY_BENCH_PROFILE_KIND=trace takes an execution
// trace instead (go tool trace file: what goroutines waited for, and how long), =allocs what
// was allocated meanwhile (go tool pprof -sample_index=alloc_space).
func BenchmarkPipelineBurst(b *testing.B) {
	cfg := burstConfig{files: 5000, sessions: 20, profile: os.Getenv("FERRY_BENCH_PROFILE"), profileKind: "profile", profileFor: 15 * time.Second}
	switch k := os.Getenv("FERRY_BENCH_PROFILE_KIND"); k {
	case "", "profile":
	case "trace", "allocs":
		cfg.profileKind = k
	default:
		b.Fatalf("FERRY_BENCH_PROFILE_KIND=%q: want profile, trace or allocs", k)
	}
	if v := os.Getenv("FERRY_BENCH_PROFILE_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("FERRY_BENCH_PROFILE_SECONDS=%q: want a positive number", v)
		}
		cfg.profileFor = time.Duration(n) * time.Second
	}
	if v := os.Getenv("FERRY_BENCH_FILES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("FERRY_BENCH_FILES=%q: want a positive number", v)
		}
		cfg.files = n
	}
	r := runBurst(b, cfg)
	b.ReportMetric(r.filesPerSec, "files/s")
	b.ReportMetric(r.uploadsPerSec, "uploads/s")
	b.ReportMetric(float64(r.p50.Milliseconds()), "p50-ms")
	b.ReportMetric(float64(r.p99.Milliseconds()), "p99-ms")
	b.ReportMetric(float64(r.max.Milliseconds()), "max-ms")
	b.ReportMetric(float64(r.cpuPerFile.Microseconds())/1000, "CPU-ms/file")
	b.Log(r)
}

// TestPipelineBurstSmoke runs the burst small, so its exactly-once accounting is exercised by
// `make test`: every file processed and notified once, nothing dead-lettered.
func TestPipelineBurstSmoke(t *testing.T) {
	r := runBurst(t, burstConfig{files: 80, sessions: 4})
	t.Log(r)
}

type burstConfig struct {
	files       int
	sessions    int
	profile     string // where to write a CPU profile or trace of the burst; "" = none
	profileKind string // profile (CPU), trace or allocs
	profileFor  time.Duration
}

type burstResult struct {
	cfg           burstConfig
	uploads       time.Duration // first upload started -> last closed
	total         time.Duration // first upload started -> last notification
	filesPerSec   float64       // end to end
	uploadsPerSec float64
	p50, p99, max time.Duration // upload close -> notification
	// cpuPerFile is bin/ferry's CPU time (gateway, endpoint, bus and pipeline) per file from the
	// first upload to the last notification: on a shared machine a steadier measure than rates.
	cpuPerFile time.Duration
	load       string
}

func (r burstResult) String() string {
	return fmt.Sprintf("%d CSVs from %d SFTP sessions: uploads done in %v (%.0f files/s), last notification at %v: %.0f files/s end to end; "+
		"close -> notification p50 %v, p99 %v, max %v; bin/ferry CPU %.2f ms per file; every file processed and notified exactly once; load average %s",
		r.cfg.files, r.cfg.sessions, r.uploads.Round(time.Millisecond), r.uploadsPerSec, r.total.Round(time.Millisecond), r.filesPerSec,
		r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.max.Round(time.Millisecond),
		float64(r.cpuPerFile.Microseconds())/1000, r.load)
}

func runBurst(tb testing.TB, cfg burstConfig) burstResult {
	testtool.Path(tb, "ssh-keygen") // the client key; a -short run skips here
	routes, err := filepath.Abs("../../configs/pipeline.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	e := startEmbedded(tb, embeddedOptions{routes: routes, metrics: cfg.profile != ""})
	tail := tailOutbox(filepath.Join(e.dir, "data", "outbox.jsonl"))
	defer tail.Close()

	// Every session logs in before the clock starts: the burst is the uploads, not the logins.
	clients := make([]*sftp.Client, cfg.sessions)
	for i := range clients {
		clients[i] = sftpClient(tb, e.sftp, e.keyFile)
	}
	var profile <-chan error
	pid := e.cmd.Process.Pid
	cpu0 := cpuTime(tb, pid)
	start := time.Now()
	if cfg.profile != "" {
		profile = captureProfile(e.pprof, cfg.profileKind, cfg.profile, cfg.profileFor)
	}
	closed := make([]time.Time, cfg.files)
	var wg sync.WaitGroup
	errs := make(chan error, cfg.sessions)
	for s, c := range clients {
		wg.Go(func() {
			// Session s uploads files s, s+sessions, s+2*sessions…: the files interleave in time.
			for i := s; i < cfg.files; i += cfg.sessions {
				if err := putFile(c, fmt.Sprintf("/f%05d.csv", i), burstCSV(i)); err != nil {
					errs <- fmt.Errorf("session %d, file %d: %w", s, i, err)
					return
				}
				closed[i] = time.Now()
			}
		})
	}
	wg.Wait()
	uploads := time.Since(start)
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	for _, c := range clients {
		c.Close()
	}

	// Every notification, bounded: a pipeline slower than 10 files/s fails the benchmark.
	deadline := time.Now().Add(time.Minute + time.Duration(cfg.files)*100*time.Millisecond)
	for tail.notified() < cfg.files {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d files notified after %v\n%s", tail.notified(), cfg.files, time.Since(start).Round(time.Second), e.gateway)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cpu := cpuTime(tb, pid) - cpu0
	if profile != nil {
		if err := <-profile; err != nil {
			tb.Errorf("%s: %v", cfg.profileKind, err)
		} else {
			tb.Logf("%s of the burst in %s", cfg.profileKind, cfg.profile)
		}
	}
	// A duplicate would come within the bus's retry delays: let the bus settle, then count.
	time.Sleep(2 * time.Second)
	tail.Close()

	r := burstResult{cfg: cfg, uploads: uploads, load: loadAverage(), cpuPerFile: cpu / time.Duration(cfg.files)}
	var last time.Time
	lat := make([]time.Duration, 0, cfg.files)
	var problems []string
	for i := range cfg.files {
		key := fmt.Sprintf("incoming/bench/f%05d.csv", i)
		if n := tail.count[key]; n != 1 {
			problems = append(problems, fmt.Sprintf("%s notified %d times", key, n))
			continue
		}
		n := tail.first[key]
		lat = append(lat, n.Sub(closed[i]))
		if n.After(last) {
			last = n
		}
	}
	if len(tail.count) != cfg.files {
		problems = append(problems, fmt.Sprintf("notices name %d keys, want %d", len(tail.count), cfg.files))
	}
	if tail.lines != cfg.files || len(tail.bad) > 0 {
		problems = append(problems, fmt.Sprintf("outbox has %d lines, want %d (%d not notices: %q)", tail.lines, cfg.files, len(tail.bad), tail.bad))
	}
	problems = append(problems, checkOutputs(tb, e, cfg.files)...)
	if dead := deadLetters(tb, filepath.Join(e.dir, "data", "events", "dead-letter")); len(dead) > 0 {
		problems = append(problems, fmt.Sprintf("dead letters: %q", dead))
	}
	if len(problems) > 0 {
		tb.Fatalf("not exactly once:\n%s", strings.Join(problems[:min(len(problems), 20)], "\n"))
	}
	slices.Sort(lat)
	r.total = last.Sub(start)
	r.filesPerSec = float64(cfg.files) / r.total.Seconds()
	r.uploadsPerSec = float64(cfg.files) / uploads.Seconds()
	r.p50, r.p99, r.max = lat[len(lat)/2], lat[(len(lat)*99)/100], lat[len(lat)-1]
	return r
}

// burstCSV is a small valid CSV, different for every i (no two inputs share content).
func burstCSV(i int) []byte {
	var b strings.Builder
	b.WriteString("id,name,qty,price\n")
	for row := range 20 {
		fmt.Fprintf(&b, "%d,item-%d-%d,%d,%d.%02d\n", i*100+row, i, row, row%7, i%1000, row)
	}
	return []byte(b.String())
}

func putFile(c *sftp.Client, name string, data []byte) error {
	f, err := c.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close() // the gateway commits on close
}

// sftpClient logs in as bench with keyFile over its own SSH connection.
func sftpClient(tb testing.TB, addr, keyFile string) *sftp.Client {
	tb.Helper()
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User: "bench", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // a test's own server on loopback
		Timeout:         10 * time.Second,
	})
	if err != nil {
		tb.Fatalf("ssh %s: %v", addr, err)
	}
	c, err := sftp.NewClient(conn)
	if err != nil {
		conn.Close()
		tb.Fatalf("sftp %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

// checkOutputs lists the pipeline's outputs: exactly one per input.
func checkOutputs(tb testing.TB, e *embedded, files int) []string {
	want := map[string]bool{}
	for i := range files {
		want[fmt.Sprintf("processed/bench/f%05d.jsonl", i)] = true
	}
	var problems []string
	got := 0
	p := s3.NewListObjectsV2Paginator(e.client, &s3.ListObjectsV2Input{Bucket: aws.String("ferry"), Prefix: aws.String("processed/")})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			tb.Fatalf("list outputs: %v", err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if !want[k] {
				problems = append(problems, "unexpected output "+k)
				continue
			}
			got++
		}
	}
	if got != files {
		problems = append(problems, fmt.Sprintf("%d outputs, want %d", got, files))
	}
	return problems
}

// deadLetters lists the files under the bus's dead-letter folder.
func deadLetters(tb testing.TB, dir string) []string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, path.Base(p))
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		tb.Fatal(err)
	}
	return out
}

// captureProfile takes a CPU profile, an execution trace or the allocations (kind: profile,
// trace or allocs) of the process serving /debug/pprof at addr over d, into file.
func captureProfile(addr, kind, file string, d time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", addr, kind, int(d.Seconds())))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("profile: %s", resp.Status)
			return
		}
		f, err := os.Create(file)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	return done
}
