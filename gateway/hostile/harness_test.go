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
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/ferryproc"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

const (
	MiB = 1 << 20
	// password of both users (alice attacks, bob is the other user).
	password = "hostile-test-password"
)

// measureOnly reports whether the tests only measure (an older binary): see the package doc.
func measureOnly() bool { return os.Getenv("FERRY_HOSTILE_MEASURE_ONLY") == "1" }

// ferryBinary is FERRY_BIN, or bin/ferry built from this module once per test run.
func ferryBinary(t *testing.T) string {
	if p := os.Getenv("FERRY_BIN"); p != "" {
		return p
	}
	return ferryproc.Build(t)
}

// gateway is a running bin/ferry over versitygw, serving SFTP to alice and bob.
type gateway struct {
	s3      *s3test.Server
	sftp    string // host:port
	metrics string // host:port
	proc    *ferryproc.Process
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
	g := &gateway{s3: srv, sftp: testtool.FreeAddr(t), metrics: testtool.FreeAddr(t)}
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
	g.proc = ferryproc.Start(t, ferryBinary(t), filepath.Join(dir, "ferry.yaml"),
		"AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.Secret)
	// Killed at the end, not stopped gracefully: an attack may leave transfers that the
	// shutdown grace would wait for.
	t.Cleanup(func() { _ = g.proc.Cmd.Process.Kill() })
	g.proc.WaitListening(t, g.sftp)
	return g
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

// rss is the gateway's resident memory now (VmRSS), in bytes.
func (g *gateway) rss(t *testing.T) int64 { return must(t, g.proc.RSS) }

// peakRSS is the gateway's peak resident memory so far (VmHWM), in bytes.
func (g *gateway) peakRSS(t *testing.T) int64 { return must(t, g.proc.PeakRSS) }

func must(t *testing.T, read func() (int64, error)) int64 {
	t.Helper()
	v, err := read()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// metric reads one metric from /metrics (0 when absent).
func (g *gateway) metric(t *testing.T, name string) float64 {
	t.Helper()
	families, err := ferryproc.Scrape(t.Context(), g.metrics)
	if err != nil {
		t.Fatal(err)
	}
	return ferryproc.Sum(families, name, nil)
}

// sampleRSS records the gateway's highest VmRSS until Stop.
func (g *gateway) sampleRSS() *ferryproc.RSSSampler {
	return ferryproc.SampleRSS(g.proc.Cmd.Process.Pid, 10*time.Millisecond)
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

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/MiB) }
