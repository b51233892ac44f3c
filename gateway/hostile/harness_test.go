// Package hostile attacks the real gateway binary the way a logged-in but hostile client would
// (issue 10, "One logged-in user can exhaust memory"), and checks that its memory stays within
// the configured budget plus a stated overhead, that another user's transfers go on meanwhile,
// and that whatever was stored is byte-exact.
//
// The tests build bin/ferry with `go build` (FERRY_BIN names a prebuilt binary instead) and run
// it over versitygw, as `ferry serve` runs in production. To measure an older gateway with the
// same attacks, set FERRY_BIN to its binary and FERRY_HOSTILE_MEASURE_ONLY=1: the tests then
// use only configuration keys that binary knows, log every figure and assert nothing.
package hostile_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

const (
	MiB = 1 << 20
	// password of both users (alice attacks, bob is the other user).
	password = "hostile-test-password"
)

// measureOnly reports whether the tests only measure (an older binary): see the package doc.
func measureOnly() bool { return os.Getenv("FERRY_HOSTILE_MEASURE_ONLY") == "1" }

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// ferryBinary is FERRY_BIN, or bin/ferry built from this module once per test run.
func ferryBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FERRY_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-hostile-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "ferry")
		cmd := exec.Command("go", "build", "-o", builtBin, "./gateway/cmd/ferry")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./gateway/cmd/ferry: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// gateway is a running bin/ferry over versitygw, serving SFTP to alice and bob.
type gateway struct {
	s3      *s3test.Server
	sftp    string // host:port
	metrics string // host:port
	cmd     *exec.Cmd
	logs    *logbuf.Buffer
}

// startGateway starts the binary with the default configuration plus extra (YAML lines at the
// top level; empty in measure-only mode).
func startGateway(t *testing.T, extra string) *gateway {
	t.Helper()
	srv := s3test.Start(t)
	dir := t.TempDir()
	hash, err := users.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "users.yaml"), fmt.Sprintf(`users:
  - name: alice
    password_hash: %q
    home: alice/
    permissions: ["*"]
  - name: bob
    password_hash: %q
    home: bob/
    permissions: ["*"]
`, hash, hash))
	g := &gateway{s3: srv, sftp: freeAddr(t), metrics: freeAddr(t), logs: &logbuf.Buffer{Max: 256 << 10}}
	write(t, filepath.Join(dir, "ferry.yaml"), fmt.Sprintf(`listen:
  sftp: %q
  metrics: %q
storage:
  s3:
    bucket: %s
    endpoint: %s
    region: %s
    path_style: true
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
log:
  level: info
%s`, g.sftp, g.metrics, srv.Bucket, srv.Endpoint, srv.Region, extra))
	g.cmd = exec.Command(ferryBinary(t), "serve", "--config", filepath.Join(dir, "ferry.yaml"))
	g.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.Secret)
	g.cmd.Stdout, g.cmd.Stderr = g.logs, g.logs
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = g.cmd.Process.Kill()
		_ = g.cmd.Wait()
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.logs)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", g.sftp, time.Second); err == nil {
			c.Close()
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not listen on %s:\n%s", g.sftp, g.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dial logs user in over a new SSH connection.
func (g *gateway) dial(t *testing.T, user string) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", g.sftp, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.Password(password)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatalf("%s: ssh: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (g *gateway) sftpClient(t *testing.T, conn *ssh.Client) *sftp.Client {
	t.Helper()
	c, err := sftp.NewClient(conn, sftp.UseConcurrentWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// status reads a field of /proc/PID/status in bytes (VmRSS, VmHWM).
func (g *gateway) status(t *testing.T, field string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return kib << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, g.cmd.Process.Pid)
	return 0
}

// metric reads one unlabelled metric from /metrics (0 when absent).
func (g *gateway) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + g.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return 0
}

// rssSampler records the highest VmRSS seen while it runs.
type rssSampler struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func (g *gateway) sampleRSS(t *testing.T) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	pid := g.cmd.Process.Pid
	go func() {
		defer close(s.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				for _, line := range strings.Split(string(data), "\n") {
					if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
						kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
						if kib<<10 > s.peak.Load() {
							s.peak.Store(kib << 10)
						}
					}
				}
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) Stop() int64 {
	close(s.stop)
	<-s.done
	return s.peak.Load()
}

// victim is bob's transfer during an attack: an upload and a download of size random bytes,
// which must finish within limit and come back byte-exact.
func (g *gateway) victim(t *testing.T, size int, limit time.Duration) time.Duration {
	t.Helper()
	c := g.sftpClient(t, g.dial(t, "bob"))
	data := randomBytes(99, size)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		f, err := c.Create("/victim.bin")
		if err != nil {
			done <- err
			return
		}
		if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
			f.Close()
			done <- fmt.Errorf("upload: %w", err)
			return
		}
		if err := f.Close(); err != nil {
			done <- fmt.Errorf("upload close: %w", err)
			return
		}
		r, err := c.Open("/victim.bin")
		if err != nil {
			done <- err
			return
		}
		defer r.Close()
		got, err := io.ReadAll(r)
		if err != nil {
			done <- fmt.Errorf("download: %w", err)
			return
		}
		if !bytes.Equal(got, data) {
			done <- fmt.Errorf("downloaded %d bytes differ from the %d uploaded", len(got), len(data))
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("bob's transfer during the attack: %v", err)
		}
	case <-time.After(limit):
		t.Fatalf("bob's transfer did not finish within %v during the attack", limit)
	}
	took := time.Since(start)
	t.Logf("bob uploaded and downloaded %d MiB byte-exact in %v during the attack", size/MiB, took.Round(time.Millisecond))
	return took
}

// objects returns every object under prefix with its SHA-256.
func (g *gateway) objects(t *testing.T, prefix string) map[string][32]byte {
	t.Helper()
	client := g.s3.Client()
	out := map[string][32]byte{}
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &g.s3.Bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if strings.HasSuffix(key, "/") || strings.Contains(key, ".ferry") {
				continue // directory and attribute markers
			}
			obj, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &g.s3.Bucket, Key: &key})
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			_, err = io.Copy(h, obj.Body)
			obj.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			out[strings.TrimPrefix(key, prefix)] = [32]byte(h.Sum(nil))
		}
	}
	return out
}

// checkLanded fails unless every object under prefix is one of want, byte-exact, and every
// name in mustLand is there. It returns how many landed.
func (g *gateway) checkLanded(t *testing.T, prefix string, want map[string][]byte, mustLand []string) int {
	t.Helper()
	got := g.objects(t, prefix)
	for name, sum := range got {
		data, ok := want[name]
		if !ok {
			t.Errorf("object %s%s was never sent", prefix, name)
			continue
		}
		if sum != sha256.Sum256(data) {
			t.Errorf("object %s%s differs from the %d bytes sent", prefix, name, len(data))
		}
	}
	for _, name := range mustLand {
		if _, ok := got[name]; !ok {
			t.Errorf("object %s%s, committed by its client, is missing", prefix, name)
		}
	}
	return len(got)
}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 11))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/MiB) }
