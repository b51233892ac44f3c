package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/ferryproc"
	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/datasize"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

const benchPassword = "bench-password"

// benchSize is the size of the large transfers: 1 GiB, or for quick runs FERRY_BENCH_SIZE (with
// a unit: 64MiB) or FERRY_BENCH_SIZE_MIB (a number of MiB).
func benchSize(b testing.TB) int64 {
	if v := os.Getenv("FERRY_BENCH_SIZE"); v != "" {
		n, err := datasize.ParseSize(v)
		if err != nil || n <= 0 {
			b.Fatalf("FERRY_BENCH_SIZE=%q: want a positive size such as 64MiB", v)
		}
		return int64(n)
	}
	if v := os.Getenv("FERRY_BENCH_SIZE_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("FERRY_BENCH_SIZE_MIB=%q: want a positive number", v)
		}
		return n << 20
	}
	return 1 << 30
}

// writeRandomFile writes size pseudo-random (incompressible) bytes and returns their SHA-256.
func writeRandomFile(b testing.TB, path string, size int64) string {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{7})
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rng, size); err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fileSHA256(b testing.TB, path string) string {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	return readerSHA256(b, f)
}

func readerSHA256(b testing.TB, r io.Reader) string {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		b.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ferryBinary is the bin/ferry under test. A benchmark measures the one `make bench` builds
// with the release flags, or FERRY_BIN (to compare two builds); a test (the harness's smoke
// runs, under `make test`, which builds no binary) builds its own from this source tree with
// the same flags, once per test binary.
func ferryBinary(b testing.TB) string {
	b.Helper()
	if p := os.Getenv("FERRY_BIN"); p != "" {
		return p
	}
	if _, ok := b.(*testing.B); !ok {
		return builtFerry(b)
	}
	p, err := filepath.Abs("../../bin/ferry")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		b.Fatalf("%s missing: run `make bench` (it builds it)", p)
	}
	return p
}

// builtFerry builds ./gateway/cmd/ferry into a temporary folder the first time a test asks and
// returns that binary to every later caller; the folder is removed by TestMain.
func builtFerry(tb testing.TB) string {
	tb.Helper()
	testBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-bench-bin-")
		if err != nil {
			testBuild.err = err
			return
		}
		testBuild.dir = dir
		bin := filepath.Join(dir, "ferry")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "../cmd/ferry")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			testBuild.err = fmt.Errorf("build ferry: %v\n%s", err, out)
			return
		}
		testBuild.bin = bin
	})
	if testBuild.err != nil {
		tb.Fatal(testBuild.err)
	}
	return testBuild.bin
}

// testBuild is the binary the tests of this package share (a test binary's lifetime).
var testBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testBuild.dir != "" {
		os.RemoveAll(testBuild.dir)
	}
	os.Exit(code)
}

// gateway is a bin/ferry process under test.
type gateway struct {
	cmd     *exec.Cmd
	sftp    string // host:port
	ftp     string
	logs    *bytes.Buffer
	mu      sync.Mutex
	dir     string
	keyFile string
}

type gatewayOptions struct {
	endpoint string // S3 endpoint the gateway uses
	ftp      bool
	// noMemoryLimit runs the gateway with memory_limit: 0 (Go's default GC pacing), to show
	// what the default soft limit costs in throughput and saves in RSS.
	noMemoryLimit bool
}

// startGateway writes a config for srv and starts bin/ferry serve.
func startGateway(b testing.TB, srv *s3test.Server, opts gatewayOptions) *gateway {
	b.Helper()
	dir := b.TempDir()
	g := &gateway{dir: dir, logs: &bytes.Buffer{}, sftp: testtool.FreeAddr(b)}
	var pub string
	g.keyFile, pub = clientKey(b, dir)
	hash, err := users.HashPassword(benchPassword)
	if err != nil {
		b.Fatal(err)
	}
	usersYAML := fmt.Sprintf(`users:
  - name: bench
    public_keys: [%q]
    password_hash: %q
    home: bench/
    permissions: ["*"]
`, pub, hash)
	write(b, filepath.Join(dir, "users.yaml"), usersYAML)
	endpoint := srv.Endpoint
	if opts.endpoint != "" {
		endpoint = opts.endpoint
	}
	ftpLine, ftpSection := "", ""
	if opts.ftp {
		g.ftp = testtool.FreeAddr(b)
		ftpLine = "  ftp: " + strconv.Quote(g.ftp) + "\n"
		ftpSection = "ftp:\n  passive_ports: \"\"\n  tls:\n    mode: optional\n    dev_self_signed: true\n"
	}
	memLine := ""
	if opts.noMemoryLimit {
		memLine = "memory_limit: 0\n"
	}
	cfg := fmt.Sprintf(`listen:
  sftp: %q
%s  metrics: ""
storage:
  s3:
    bucket: %q
    endpoint: %q
    region: %q
    path_style: true
host_keys:
  paths: [keys/ssh_host_ed25519_key]
  generate: true
users_file: users.yaml
# Every client of the benchmark dials from 127.0.0.1: the per-address limits (50 concurrent
# uploads are one address's 50 connections) would measure the defender, not the transfers.
connections:
  max_per_ip: 0
  max_unauthenticated_per_ip: 0
%s%slog:
  level: warn
`, g.sftp, ftpLine, srv.Bucket, endpoint, srv.Region, ftpSection, memLine)
	write(b, filepath.Join(dir, "ferry.yaml"), cfg)
	g.start(b, "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.Secret)
	waitListening(b, g.sftp, g)
	return g
}

// start runs bin/ferry serve with the config in g.dir until the benchmark ends.
func (g *gateway) start(b testing.TB, env ...string) {
	b.Helper()
	g.cmd = exec.Command(ferryBinary(b), "serve", "--config", filepath.Join(g.dir, "ferry.yaml"))
	g.cmd.Env = append(os.Environ(), env...)
	g.cmd.Stdout, g.cmd.Stderr = g, g
	if err := g.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = g.cmd.Process.Kill()
		_ = g.cmd.Wait()
	})
}

// embedded is bin/ferry running the embedded default: its S3 endpoint, event bus and outbox in
// a temporary folder (dir), and the pipeline when routes is a routes file. SFTP user bench
// (g.keyFile) has the home incoming/bench/, where the shipped routes take CSVs.
type embedded struct {
	*gateway
	client  *s3.Client // the embedded endpoint, with its dev credentials
	metrics string     // host:port of /metrics, when asked for
	pprof   string     // host:port of /debug/pprof (listen.pprof), with metrics
}

type embeddedOptions struct {
	routes  string // routes file of the pipeline; "" runs none
	metrics bool   // serve /metrics and, on listen.pprof, /debug/pprof (for profiles)
}

func startEmbedded(b testing.TB, opts embeddedOptions) *embedded {
	b.Helper()
	dir := b.TempDir()
	s3Addr := testtool.FreeAddr(b)
	g := &gateway{dir: dir, logs: &bytes.Buffer{}, sftp: testtool.FreeAddr(b)}
	pipeline := ""
	if opts.routes != "" {
		pipeline = fmt.Sprintf("  pipeline:\n    routes: %q\n", opts.routes)
	}
	metrics, pprof := "", ""
	if opts.metrics {
		metrics, pprof = testtool.FreeAddr(b), testtool.FreeAddr(b)
	}
	var pub string
	g.keyFile, pub = clientKey(b, dir)
	write(b, filepath.Join(dir, "users.yaml"), fmt.Sprintf(`users:
  - name: bench
    public_keys: [%q]
    home: incoming/bench/
    permissions: ["*"]
`, pub))
	write(b, filepath.Join(dir, "ferry.yaml"), fmt.Sprintf(`listen:
  sftp: %q
  metrics: %q
  pprof: %q
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
%slog:
  level: warn
`, g.sftp, metrics, pprof, s3Addr, pipeline))
	g.start(b)
	waitListening(b, s3Addr, g)
	waitListening(b, g.sftp, g)
	local := &s3test.Server{Endpoint: "http://" + s3Addr, Region: "us-east-1", AccessKey: "ferry", Secret: "ferrysecret", Bucket: "ferry"}
	return &embedded{gateway: g, client: local.Client(), metrics: metrics, pprof: pprof}
}

// clientKey makes an ed25519 key pair in dir for the SSH clients: the private key's file and
// the public key's authorized_keys line.
func clientKey(b testing.TB, dir string) (string, string) {
	b.Helper()
	keyFile := filepath.Join(dir, "id_ed25519")
	if out, err := execCommand("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyFile); err != nil {
		b.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(keyFile + ".pub")
	if err != nil {
		b.Fatal(err)
	}
	return keyFile, strings.TrimSpace(string(pub))
}

func (g *gateway) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.logs.Write(p)
}

func (g *gateway) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.logs.String()
}

// peakRSS is the gateway process's high-water resident set (VmHWM), in bytes.
func (g *gateway) peakRSS(b testing.TB) int64 {
	return procStatus(b, g.cmd.Process.Pid, "VmHWM")
}

// procStatus is ferryproc.Status (bytes), failing tb when it cannot be read.
func procStatus(tb testing.TB, pid int, field string) int64 {
	tb.Helper()
	v, err := ferryproc.Status(pid, field)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// sftpBatch runs OpenSSH sftp in batch mode against addr and returns the elapsed time.
func sftpBatch(b testing.TB, addr, keyFile, batch string, extra ...string) time.Duration {
	host, port, _ := net.SplitHostPort(addr)
	args := append([]string{"-q", "-b", "-", "-P", port, "-i", keyFile,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"}, extra...)
	args = append(args, "bench@"+host)
	cmd := exec.Command("sftp", args...)
	cmd.Stdin = strings.NewReader(batch)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("sftp %v: %v\n%s", extra, err, out.String())
	}
	return time.Since(start)
}

// requestCounter is a reverse proxy in front of the S3 server that counts requests by kind.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func startCountingProxy(b testing.TB, target string) (*requestCounter, string) {
	u, err := url.Parse(target)
	if err != nil {
		b.Fatal(err)
	}
	rc := &requestCounter{counts: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		rc.counts[requestKind(r)]++
		rc.mu.Unlock()
		proxy.ServeHTTP(w, r) // Host stays as signed by the client
	}))
	b.Cleanup(ts.Close)
	return rc, ts.URL
}

func requestKind(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case q.Has("uploads"):
		return r.Method + " CreateMultipartUpload"
	case q.Has("partNumber"):
		return r.Method + " UploadPart"
	case q.Has("uploadId") && r.Method == http.MethodPost:
		return "CompleteMultipartUpload"
	case q.Has("tagging"):
		return r.Method + " Tagging"
	case q.Has("list-type") || (r.Method == http.MethodGet && strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0):
		return "LIST"
	}
	return r.Method
}

func (rc *requestCounter) snapshot() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	m := make(map[string]int, len(rc.counts))
	for k, v := range rc.counts {
		m[k] = v
	}
	return m
}

func waitListening(b testing.TB, addr string, g *gateway) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		if g.cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("gateway did not listen on %s:\n%s", addr, g)
}

func write(b testing.TB, path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		b.Fatal(err)
	}
}

func mibps(size int64, d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }

func execCommand(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

// directClient is the baselines' S3 client, configured as the gateway's (s3store.NewClient):
// request checksums when supported (CRC32) and, on this loopback endpoint, UNSIGNED-PAYLOAD —
// so the baselines pay the same hashing as the gateway, like for like.
func directClient(srv *s3test.Server) *s3.Client {
	return s3.New(srv.Client().Options(), func(o *s3.Options) {
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenSupported
	}, s3store.UnsignedPayloadOnLoopback)
}

// newTransferManager is the direct baseline's client: the gateway's default part size and
// concurrency, for a like-for-like comparison.
func newTransferManager(client *s3.Client) *transfermanager.Client {
	return transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = partSize
		o.Concurrency = concurrency
	})
}

// directUpload puts the file at src straight into bucket with tm and returns MiB/s.
func directUpload(b testing.TB, tm *transfermanager.Client, bucket, src string, size int64) float64 {
	b.Helper()
	f, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if _, err := tm.UploadObject(context.Background(), &transfermanager.UploadObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("direct/big.bin"), Body: f,
	}); err != nil {
		b.Fatal(err)
	}
	return mibps(size, time.Since(start))
}
