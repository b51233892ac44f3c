// Package s3test starts a real S3-compatible server (versitygw, posix backend) for tests.
//
// The server listens on 127.0.0.1 on a free port with its data in a temporary directory and is
// stopped when the test ends. versitygw is found through $VERSITYGW, then the project's
// .tools/bin (where `make tools` installs it), then PATH. When it is missing the test fails with
// the command that installs it; only a `go test -short` run skips.
//
// The posix backend keeps object metadata (ETag, user metadata, tags) in user extended
// attributes. Start checks that the temporary directory's file system accepts them (ext4, xfs,
// btrfs and tmpfs on Linux 6.6+ do) and otherwise runs versitygw with --sidecar, which keeps
// metadata in files of a separate directory.
//
// versitygw runs with --keep-alive, as S3 itself keeps connections open: its default closes
// every connection after one response, so each request paid a TCP handshake (a quarter of the
// gateway's CPU on small files), which no client of AWS pays.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
)

// Server is a running versitygw.
type Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	Region    string
	AccessKey string
	Secret    string
	Bucket    string // created by Start
	Dir       string // the posix backend's root: one directory per bucket

	mu      sync.Mutex
	buckets int

	bin, addr, sidecar string
	stopProc           func() // kills the running versitygw; idempotent
}

// Start runs versitygw until t ends and creates Bucket.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	sidecar := !xattrsWork(dir)
	if sidecar {
		t.Logf("s3test: %s lacks user xattrs, running versitygw with --sidecar", dir)
	}
	return start(t, dir, sidecar)
}

func start(t testing.TB, dir string, useSidecar bool) *Server {
	t.Helper()
	bin := findBinary(t)
	s := &Server{
		Region:    "us-east-1",
		AccessKey: AccessKey,
		Secret:    Secret(),
		Dir:       dir,
	}
	var sidecar string
	if useSidecar {
		sidecar = t.TempDir()
	}
	// Another process may take the port between our probe and versitygw's bind; retry then.
	var lastErr error
	for range 5 {
		addr := testtool.FreeAddr(t)
		err := s.run(t, bin, addr, sidecar)
		if err == nil {
			s.bin, s.addr, s.sidecar = bin, addr, sidecar
			s.Bucket = s.NewBucket(t)
			return s
		}
		lastErr = err
	}
	t.Fatalf("s3test: versitygw did not start: %v", lastErr)
	return nil
}

// run starts versitygw on addr and waits until it answers S3 requests.
func (s *Server) run(t testing.TB, bin, addr, sidecar string) error {
	args := []string{"--access", s.AccessKey, "--secret", s.Secret, "--region", s.Region,
		"--port", addr, "--quiet", "--keep-alive", "posix"}
	if sidecar != "" {
		args = append(args, "--sidecar", sidecar)
	}
	args = append(args, s.Dir)
	cmd := exec.Command(bin, args...)
	out := &logbuf.Buffer{Max: 64 << 10} // keep the head; a runaway log must not eat memory
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
	}
	s.Endpoint = "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.Client().ListBuckets(ctx, &s3.ListBucketsInput{})
		cancel()
		if err == nil {
			break
		}
		select {
		case werr := <-exited:
			exited <- werr
			stop()
			return fmt.Errorf("versitygw exited (%v): %s", werr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("versitygw not ready after 20s: %v; output: %s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stopProc = stop
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("s3test: versitygw output:\n%s", out.String())
		}
	})
	return nil
}

// Stop kills versitygw, as a crash or a network outage would take S3 away; the data stays.
func (s *Server) Stop() { s.stopProc() }

// Restart starts versitygw again after Stop, on the same address and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stopProc()
	if err := s.run(t, s.bin, s.addr, s.sidecar); err != nil {
		t.Fatalf("s3test: restart: %v", err)
	}
}

// Client returns a new S3 client for the server (path-style, static credentials, no shared
// config files read).
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.Secret, ""),
	})
}

// NewBucket creates an empty bucket with a unique name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.buckets++
	name := fmt.Sprintf("ferry-test-%d-%s", s.buckets, randHex(3))
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("s3test: create bucket %s: %v", name, err)
	}
	return name
}

// findBinary locates versitygw ($VERSITYGW, the project's .tools/bin, PATH) or fails the test
// with how to install it (a -short run skips instead).
func findBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("s3test: $VERSITYGW=%s: %v", p, err)
		}
		return p
	}
	return testtool.Path(t, "versitygw")
}

// xattrsWork reports whether dir's file system stores user extended attributes.
func xattrsWork(dir string) bool {
	f, err := os.CreateTemp(dir, ".xattr-probe-")
	if err != nil {
		return false
	}
	name := f.Name()
	_ = f.Close()
	defer os.Remove(name)
	if err := syscall.Setxattr(name, "user.ferry.probe", []byte("1"), 0); err != nil {
		return false
	}
	buf := make([]byte, 8)
	n, err := syscall.Getxattr(name, "user.ferry.probe", buf)
	return err == nil && n == 1
}

// AccessKey is every test server's access key.
const AccessKey = "ferrytest"

// Secret is every test server's secret key in this process: random, so nothing works by
// accident with a default, and shared, so a package whose code reads credentials from the
// environment (the SDK's standard chain) can set them once in TestMain and run tests in
// parallel (t.Setenv forbids that).
var Secret = sync.OnceValue(func() string { return "ferrytest-secret-" + randHex(8) })

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
