package infra_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/ferryproc"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

// embeddedFerry is `ferry serve` running the embedded default in a temporary folder: the
// gateway, an S3-compatible endpoint on a local directory, the event bus and the pipeline.
type embeddedFerry struct {
	dir              string
	sftpAddr, s3Addr string
	ftpAddr          string
	log              *syncBuffer // stdout and stderr: JSON log lines
	cmd              *exec.Cmd
}

const (
	demoUser     = "demo"
	demoPassword = "demo-password-for-tests"
)

// startEmbedded writes a config and starts ferry: with the whole embedded default (bus,
// pipeline, local notifications), or, given an EventBridge endpoint, with only the embedded S3
// endpoint and the gateway's events sent to that EventBridge through a one-event queue.
func startEmbedded(t *testing.T, eventBridge string) *embeddedFerry {
	t.Helper()
	bin := ferryproc.Build(t)
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(demoPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := fmt.Sprintf("users:\n  - name: %s\n    password_hash: %q\n    home: incoming/demo/\n    permissions: [\"*\"]\n", demoUser, hash)
	if err := os.WriteFile(filepath.Join(dir, "users.yaml"), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &embeddedFerry{dir: dir, log: &syncBuffer{},
		sftpAddr: fmt.Sprintf("127.0.0.1:%d", testtool.FreePort(t)), s3Addr: fmt.Sprintf("127.0.0.1:%d", testtool.FreePort(t)),
		ftpAddr: fmt.Sprintf("127.0.0.1:%d", testtool.FreePort(t))}
	passive := testtool.FreePort(t)
	rest := fmt.Sprintf("  events:\n    dir: events\n  notifications:\n    outbox: outbox.jsonl\n  pipeline:\n    routes: %s",
		filepath.Join(repoRoot(t), "configs", "pipeline.yaml"))
	if eventBridge != "" {
		rest = fmt.Sprintf("events:\n  eventbridge:\n    bus: default\n    region: us-east-1\n    endpoint: %q\n    queue_size: 1", eventBridge)
	}
	cfg := fmt.Sprintf(`listen:
  sftp: %q
  ftp: %q
  metrics: ""
storage:
  s3:
    bucket: %s
    region: us-east-1
host_keys:
  paths: [keys/ssh_host_ed25519_key]
  generate: true
users_file: users.yaml
ftp:
  passive_ports: "%d-%d"
  tls:
    mode: optional
    dev_self_signed: true
embedded:
  s3:
    listen: %q
    data_dir: s3
    access_key: ferry
    secret: ferrysecret
%s
log:
  level: info
  format: json
`, f.sftpAddr, f.ftpAddr, testBucket, passive, passive, f.s3Addr, rest)
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	f.cmd = exec.Command(bin, "serve", "--config", filepath.Join(dir, "ferry.yaml"))
	f.cmd.Stdout, f.cmd.Stderr = f.log, f.log
	dieWithTest(f.cmd)
	f.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_EC2_METADATA_DISABLED=true")
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.stop(t) })
	for _, addr := range []string{f.sftpAddr, f.s3Addr, f.ftpAddr} {
		waitListening(t, addr, f.log)
	}
	return f
}

// stop ends ferry with SIGTERM, as ECS does, and waits for it to drain.
func (f *embeddedFerry) stop(t *testing.T) {
	if f.cmd.ProcessState != nil {
		return
	}
	_ = f.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- f.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = f.cmd.Process.Kill()
		<-done
		t.Errorf("ferry did not stop within 20s of SIGTERM")
	}
}

func waitListening(t *testing.T, addr string, log *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 20s: %v\n%s", addr, err, tail(log.String(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sftpClient logs in as user with password.
func (f *embeddedFerry) sftpClient(t *testing.T, user, password string) (*sftp.Client, error) {
	t.Helper()
	conn, err := ssh.Dial("tcp", f.sftpAddr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.Password(password)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // a key generated for this test run
		Timeout:         10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	c, err := sftp.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c, nil
}

func (f *embeddedFerry) sftpPut(t *testing.T, c *sftp.Client, name, content string) {
	t.Helper()
	w, err := c.Create(name)
	if err != nil {
		t.Fatalf("sftp create %s: %v", name, err)
	}
	if _, err := w.Write([]byte(content)); err != nil {
		t.Fatalf("sftp write %s: %v", name, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("sftp close %s: %v", name, err)
	}
}

// s3Client talks to the embedded S3 endpoint as an S3-native uploader would.
func (f *embeddedFerry) s3Client() *s3.Client {
	return s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("http://" + f.s3Addr), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("ferry", "ferrysecret", ""),
	})
}

// keys lists the bucket's keys under prefix.
func (f *embeddedFerry) keys(t *testing.T, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keys []string
	pages := s3.NewListObjectsV2Paginator(f.s3Client(), &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("list s3://%s/%s: %v", testBucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

func (f *embeddedFerry) putObject(t *testing.T, key, content string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.s3Client().PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String(key), Body: strings.NewReader(content),
	}); err != nil {
		t.Fatalf("put s3://%s/%s: %v", testBucket, key, err)
	}
}
