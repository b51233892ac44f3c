package app_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/app"
	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// TestRunServesEveryProtocolOverOneStore starts the assembled gateway from a config file, as
// `ferry serve` does, and checks that SFTP and FTP land in the same home with their protocol in
// the object's metadata, that /healthz and /metrics answer, that a users-file edit is picked up
// without a restart, and that cancelling the context stops everything.
func TestRunServesEveryProtocolOverOneStore(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	dir := t.TempDir()
	hash, err := users.HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	usersFile := filepath.Join(dir, "users.yaml")
	writeFile(t, usersFile, fmt.Sprintf(`users:
  - name: alice
    password_hash: %q
    home: partners/alice/
    permissions: ["*"]
`, hash))
	sftpAddr, ftpAddr, metricsAddr := testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t)
	cfgFile := filepath.Join(dir, "ferry.yaml")
	writeFile(t, cfgFile, fmt.Sprintf(`listen:
  sftp: %q
  ftp: %q
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
ftp:
  passive_ports: ""
  tls:
    mode: optional
    dev_self_signed: true
`, sftpAddr, ftpAddr, metricsAddr, srv.Bucket, srv.Endpoint, srv.Region))
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &logbuf.Buffer{}
	go func() { done <- app.Run(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil))) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	for _, a := range []string{sftpAddr, ftpAddr, metricsAddr} {
		waitListening(t, a, done, logs)
	}

	// SFTP upload.
	sc := sftpClient(t, sftpAddr, "alice", "s3cret")
	f, err := sc.Create("/via-sftp.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("hello over sftp")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	checkObject(t, srv, "partners/alice/via-sftp.txt", "hello over sftp", "sftp", "alice")

	// FTP upload over explicit TLS, into the same home.
	fc, err := ftp.Dial(ftpAddr, ftp.DialWithTimeout(5*time.Second),
		ftp.DialWithExplicitTLS(&tls.Config{InsecureSkipVerify: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Quit()
	if err := fc.Login("alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := fc.Stor("via-ftp.txt", strings.NewReader("hello over ftps")); err != nil {
		t.Fatal(err)
	}
	checkObject(t, srv, "partners/alice/via-ftp.txt", "hello over ftps", "ftps", "alice")
	names, err := fc.NameList("/")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "via-ftp.txt,via-sftp.txt" && strings.Join(names, ",") != "/via-ftp.txt,/via-sftp.txt" {
		t.Errorf("FTP listing of the shared home = %v", names)
	}

	// Health and metrics.
	for path, want := range map[string]string{"/healthz": "ok", "/metrics": "go_goroutines"} {
		resp, err := http.Get("http://" + metricsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d %q, want 200 containing %q", path, resp.StatusCode, body, want)
		}
	}

	// A user added to the file can log in without a restart; alice's session is kept.
	bobHash, _ := users.HashPassword("bobpw")
	if err := users.Add(ctx, users.LocalFile(usersFile), users.Entry{Name: "bob", PasswordHash: bobHash, Home: "partners/bob/",
		Permissions: []string{"list", "download"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := dialSFTP(sftpAddr, "bob", "bobpw")
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob cannot log in 10s after being added: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := sc.Stat("/via-sftp.txt"); err != nil {
		t.Errorf("alice's session after the reload: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(app.ShutdownGrace + 5*time.Second):
		t.Fatal("Run did not return after cancel")
	}
	done <- nil // for the cleanup
}

// TestRunRefusesATakenPort: start-up fails with the listener's name instead of serving half.
func TestRunRefusesATakenPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv := s3test.Start(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users.yaml"), "users: []\n")
	cfgFile := filepath.Join(dir, "ferry.yaml")
	writeFile(t, cfgFile, fmt.Sprintf(`listen:
  sftp: %q
  metrics: ""
storage:
  s3: {bucket: %s, endpoint: %s, path_style: true}
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
`, l.Addr().String(), srv.Bucket, srv.Endpoint))
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	err = app.Run(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "listen sftp on "+l.Addr().String()) {
		t.Fatalf("Run on a taken port = %v, want a listen sftp error", err)
	}
}

func checkObject(t *testing.T, srv *s3test.Server, key, body, protocol, user string) {
	t.Helper()
	out, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	got, _ := io.ReadAll(out.Body)
	if string(got) != body {
		t.Errorf("%s = %q, want %q", key, got, body)
	}
	if out.Metadata["ferry-protocol"] != protocol || out.Metadata["ferry-user"] != user {
		t.Errorf("%s metadata = %v, want protocol %s user %s", key, out.Metadata, protocol, user)
	}
}

func dialSFTP(addr, user, password string) (*ssh.Client, error) {
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.Password(password)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         5 * time.Second,
	})
}

func sftpClient(t *testing.T, addr, user, password string) *sftp.Client {
	t.Helper()
	conn, err := dialSFTP(addr, user, password)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

func waitListening(t *testing.T, addr string, done chan error, logs *logbuf.Buffer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			done <- err // for the cleanup that waits for Run
			t.Fatalf("Run returned early: %v\n%s", err, logs)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listening on %s\n%s", addr, logs)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRunEmbedded is the no-AWS default: the process serves an S3 endpoint on a local directory
// and the gateway stores into it through the same S3 client code; S3-native clients see the file.
func TestRunEmbedded(t *testing.T) {
	t.Parallel()
	l := startLocal(t, "")
	dir, sftpAddr, logs := l.dir, l.sftp, l.logs
	sc := sftpClient(t, sftpAddr, "demo", "demo")
	f, err := sc.Create("/report.csv")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("a,b\n1,2\n"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	local := l.s3Server()
	checkObject(t, local, "incoming/demo/report.csv", "a,b\n1,2\n", "sftp", "demo")
	if _, err := os.Stat(filepath.Join(dir, "data", "s3")); err != nil {
		t.Errorf("embedded data dir: %v", err)
	}
	// An S3-native uploader's object is visible to the SFTP user.
	if _, err := local.Client().PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String("ferry"), Key: aws.String("incoming/demo/native.csv"), Body: strings.NewReader("x"),
	}); err != nil {
		t.Fatal(err)
	}
	if st, err := sc.Stat("/native.csv"); err != nil || st.Size() != 1 {
		t.Errorf("stat of the S3-native upload over SFTP = %v, %v", st, err)
	}

	// Both uploads became S3's Object Created event on the bus and an arrival notification.
	outbox := filepath.Join(dir, "data", "outbox.jsonl")
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(outbox)
		if strings.Count(string(data), "\n") >= 2 {
			for _, key := range []string{"incoming/demo/report.csv", "incoming/demo/native.csv"} {
				if !strings.Contains(string(data), `"key":"`+key+`"`) {
					t.Errorf("no arrival notification for %s in %s", key, data)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox after 10s: %q\n%s", data, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "data", "events", "seg-*.jsonl"))
	var log strings.Builder
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		log.Write(b)
	}
	for _, want := range []string{`"detail-type":"Object Created"`, `"key":"incoming/demo/report.csv"`, `"reason":"PutObject"`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("event log lacks %s:\n%s", want, log.String())
		}
	}
}

// local is a running embedded default (S3 endpoint, bus, outbox) with SFTP and a demo user.
type local struct {
	dir, sftp, s3 string
	logs          *logbuf.Buffer
}

func (l *local) s3Server() *s3test.Server {
	return &s3test.Server{Endpoint: "http://" + l.s3, Region: "us-east-1", AccessKey: "ferry", Secret: "ferrysecret", Bucket: "ferry"}
}

// startLocal runs the embedded default; routes is a pipeline routes file, "" for none.
func startLocal(t *testing.T, routes string) *local {
	t.Helper()
	dir := t.TempDir()
	hash, err := users.HashPassword("demo")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "users.yaml"), fmt.Sprintf("users:\n  - name: demo\n    password_hash: %q\n    home: incoming/demo/\n    permissions: [\"*\"]\n", hash))
	l := &local{dir: dir, sftp: testtool.FreeAddr(t), s3: testtool.FreeAddr(t), logs: &logbuf.Buffer{}}
	cfgFile := filepath.Join(dir, "ferry.yaml")
	writeFile(t, cfgFile, fmt.Sprintf(`listen:
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
  pipeline:
    routes: %q
`, l.sftp, l.s3, routes))
	runGateway(t, cfgFile, l.logs, l.sftp, l.s3)
	return l
}
