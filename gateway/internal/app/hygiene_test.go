package app_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/app"
	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// embeddedConfig is a minimal embedded-default configuration serving SFTP on sftp with the
// listen keys in extra (YAML lines under listen:, indented by two spaces).
func embeddedConfig(t *testing.T, dir, sftp, s3, extra string) string {
	t.Helper()
	writeFile(t, filepath.Join(dir, "users.yaml"), "users: []\n")
	return fmt.Sprintf(`listen:
  sftp: %q
%sstorage:
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
`, sftp, extra, s3)
}

// Profiling is off unless listen.pprof names a loopback address: the metrics port (which a
// load balancer or a scraper may reach) never serves /debug/pprof, and a pprof listener on
// any other address refuses to start.
func TestProfilingIsOptInAndLoopbackOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sftp, s3, metrics, pprof := testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t)
	runConfig(t, dir, embeddedConfig(t, dir, sftp, s3, fmt.Sprintf("  metrics: %q\n  pprof: %q\n", metrics, pprof)),
		sftp, metrics, pprof)
	for _, tt := range []struct {
		url  string
		code int
		want string
	}{
		{"http://" + metrics + "/debug/pprof/", 404, ""},
		{"http://" + metrics + "/debug/pprof/goroutine?debug=1", 404, ""},
		{"http://" + metrics + "/metrics", 200, "go_goroutines"},
		{"http://" + pprof + "/debug/pprof/", 200, "goroutine"},
		{"http://" + pprof + "/debug/pprof/goroutine?debug=1", 200, "goroutine profile"},
		{"http://" + pprof + "/metrics", 404, ""},
	} {
		code, body := httpGet(t, tt.url)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s = %d %.80q, want %d containing %q", tt.url, code, body, tt.code, tt.want)
		}
	}

	for _, addr := range []string{"0.0.0.0:6060", ":6060", "[::]:6060", "10.0.0.5:6060", "example.com:6060"} {
		d := t.TempDir()
		file := filepath.Join(d, "ferry.yaml")
		writeFile(t, file, embeddedConfig(t, d, "127.0.0.1:2222", "127.0.0.1:9000", fmt.Sprintf("  pprof: %q\n", addr)))
		_, err := config.Load(file)
		if err == nil || !strings.Contains(err.Error(), file+":3: listen.pprof: ") {
			t.Errorf("listen.pprof %s: %v, want refused at %s:3", addr, err, file)
		}
	}
}

// A pre-signed URL is a bearer credential until it expires: its signature (and a session
// token) never reach the log, even at debug level, where the embedded endpoint logs every
// request with its query.
func TestPresignedSignaturesRedactedInDebugLogs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sftp, s3addr := testtool.FreeAddr(t), testtool.FreeAddr(t)
	file := filepath.Join(dir, "ferry.yaml")
	writeFile(t, file, embeddedConfig(t, dir, sftp, s3addr, "")+"log:\n  level: debug\n")
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, cfg.Log.NewLogger(logs)) }()
	t.Cleanup(func() { cancel(); <-done })
	waitListening(t, s3addr, done, logs)

	local := &s3test.Server{Endpoint: "http://" + s3addr, Region: "us-east-1", AccessKey: "ferry", Secret: "ferrysecret", Bucket: "ferry"}
	client := local.Client()
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("ferry"), Key: aws.String("shared/report.csv"),
		Body: strings.NewReader("a,b\n")}); err != nil {
		t.Fatal(err)
	}
	token := "FwoGZXIvYXdzEBkaDSessionTokenSecret0123456789"
	signed, err := s3.NewPresignClient(client).PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String("ferry"), Key: aws.String("shared/report.csv")},
		s3.WithPresignExpires(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(signed.URL)
	sig := u.Query().Get("X-Amz-Signature")
	if len(sig) != 64 {
		t.Fatalf("presigned URL without a signature: %s", signed.URL)
	}
	code, body := httpGet(t, signed.URL)
	if code != 200 || body != "a,b\n" {
		t.Fatalf("GET presigned URL = %d %q", code, body)
	}
	// A URL carrying a session token (as temporary credentials sign) is refused by the
	// endpoint, but its request line is logged all the same.
	q := u.Query()
	q.Set("X-Amz-Security-Token", token)
	u.RawQuery = q.Encode()
	httpGet(t, u.String())

	testtool.Eventually(t, 5*time.Second, "the presigned GETs in the debug log", func() bool {
		return strings.Count(logs.String(), "shared/report.csv") >= 3
	})
	for _, secret := range []string{sig, token} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds a presigned URL's secret %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs.String(), "X-Amz-Signature=REDACTED") {
		t.Errorf("the debug log does not show the redacted query:\n%s", logs)
	}
}

// ftpConn speaks FTP by hand so a test sees every reply exactly as a client does.
type ftpConn struct {
	t  *testing.T
	c  net.Conn
	tp *textproto.Conn
}

func dialFTP(t *testing.T, addr string) *ftpConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	f := &ftpConn{t: t, c: c, tp: textproto.NewConn(c)}
	if code, msg := f.read(); code != 220 {
		t.Fatalf("greeting %d %s", code, msg)
	}
	return f
}

func (f *ftpConn) read() (int, string) {
	code, msg, err := f.tp.ReadResponse(0)
	if _, ok := err.(*textproto.Error); err != nil && !ok {
		f.t.Fatalf("read reply: %v", err)
	}
	return code, msg
}

func (f *ftpConn) cmd(format string, args ...any) (int, string) {
	f.t.Helper()
	if err := f.tp.PrintfLine(format, args...); err != nil {
		f.t.Fatal(err)
	}
	return f.read()
}

// data sends PASV and returns the data connection, dialled.
func (f *ftpConn) data() net.Conn {
	f.t.Helper()
	code, msg := f.cmd("PASV")
	m := regexp.MustCompile(`\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)`).FindStringSubmatch(msg)
	if code != 227 || m == nil {
		f.t.Fatalf("PASV: %d %s", code, msg)
	}
	hi, _ := strconv.Atoi(m[5])
	lo, _ := strconv.Atoi(m[6])
	d, err := net.DialTimeout("tcp", fmt.Sprintf("%s.%s.%s.%s:%d", m[1], m[2], m[3], m[4], hi*256+lo), 5*time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { d.Close() })
	return d
}

// internals matches what a reply to a client must never carry: socket addresses, Go's network
// error wording, the S3 SDK's operation and request details.
var internals = regexp.MustCompile(`(?i)\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d+|\[[0-9a-f:]*\]:\d+|\btcp\b|\bdial\b|connection refused|` +
	`operation error|api error|statuscode|request ?id|https?://|exceeded maximum|retry|s3store|versity|` +
	`(Head|Get|Put|Delete|Copy)Object|ListObjects|MultipartUpload|smithy`)

// With S3 gone (versitygw killed), every FTP command and SFTP request that needs it fails with
// a short reply: no socket address, no SDK operation name or request detail. The detail goes
// to the log.
func TestRepliesWithS3DownShowNoInternals(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	sc := sftpClient(t, g.sftpAddr, "alice", alicePassword)
	if err := sc.Mkdir("/docs"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"/a.txt", "/docs/b.txt"} {
		f, err := sc.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("content"))
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	f := dialFTP(t, g.ftpAddr)
	if code, msg := f.cmd("USER alice"); code != 331 {
		t.Fatalf("USER: %d %s", code, msg)
	}
	if code, msg := f.cmd("PASS %s", alicePassword); code != 230 {
		t.Fatalf("PASS: %d %s", code, msg)
	}
	f.cmd("TYPE I")

	g.s3.Stop()

	type reply struct {
		what string
		code int
		msg  string
	}
	var replies []reply
	add := func(what string, code int, msg string) { replies = append(replies, reply{what, code, msg}) }
	for _, c := range []string{"CWD /docs", "CWD /", "SIZE a.txt", "MDTM a.txt", "MLST a.txt", "DELE a.txt", "MKD newdir",
		"RMD docs", "HASH a.txt", "MFMT 20200101000000 a.txt", "SITE CHMOD 600 a.txt", "STAT a.txt"} {
		code, msg := f.cmd("%s", c)
		add("FTP "+c, code, msg)
	}
	code, msg := f.cmd("RNFR a.txt")
	add("FTP RNFR a.txt", code, msg)
	if code == 350 {
		code, msg = f.cmd("RNTO c.txt")
		add("FTP RNTO c.txt", code, msg)
	}
	for _, c := range []string{"LIST /docs", "NLST /docs", "MLSD /docs", "RETR a.txt", "STOR new.txt", "APPE a.txt"} {
		d := f.data()
		code, msg := f.cmd("%s", c)
		add("FTP "+c, code, msg)
		if code == 150 || code == 125 {
			if strings.HasPrefix(c, "STOR") || strings.HasPrefix(c, "APPE") {
				d.Write([]byte("new content"))
			} else {
				io.Copy(io.Discard, d)
			}
			d.Close()
			code, msg = f.read()
			add("FTP "+c+" (end)", code, msg)
		}
		d.Close()
	}

	sftpOps := map[string]func() error{
		"stat":    func() error { _, err := sc.Stat("/a.txt"); return err },
		"readdir": func() error { _, err := sc.ReadDir("/docs"); return err },
		"open":    func() error { _, err := sc.Open("/a.txt"); return err },
		"upload": func() error {
			w, err := sc.Create("/new.txt")
			if err != nil {
				return err
			}
			w.Write([]byte("x"))
			return w.Close()
		},
		"remove":  func() error { return sc.Remove("/a.txt") },
		"mkdir":   func() error { return sc.Mkdir("/newdir") },
		"rmdir":   func() error { return sc.RemoveDirectory("/docs") },
		"rename":  func() error { return sc.Rename("/a.txt", "/c.txt") },
		"chmod":   func() error { return sc.Chmod("/a.txt", 0o600) },
		"statvfs": func() error { _, err := sc.StatVFS("/"); return err },
	}
	for name, op := range sftpOps {
		if err := op(); err != nil {
			add("SFTP "+name, 0, err.Error())
		}
	}

	failed := 0
	for _, r := range replies {
		t.Logf("%s: %d %s", r.what, r.code, r.msg)
		if r.code >= 400 || r.code == 0 {
			failed++
		}
		if m := internals.FindString(r.msg); m != "" {
			t.Errorf("%s: reply %d %q shows %q", r.what, r.code, r.msg, m)
		}
	}
	if failed < 20 {
		t.Errorf("only %d requests failed with S3 down: the test did not reach S3", failed)
	}
	if !strings.Contains(g.logs.String(), "connection refused") {
		t.Errorf("the log lost the detail of the failures")
	}
}

// Through the assembled gateway: with the one passive port taken, another client's PASV gets
// 425 and ferry_ftp_passive_ports_exhausted_total counts it.
func TestPassivePortExhaustionMetric(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sftp, ftpAddr, s3, metrics := testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t)
	port := testtool.FreePort(t)
	hash, err := users.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	text := embeddedConfig(t, dir, sftp, s3, fmt.Sprintf("  ftp: %q\n  metrics: %q\n", ftpAddr, metrics)) +
		fmt.Sprintf("ftp:\n  passive_ports: \"%d-%d\"\n  tls:\n    mode: none\n", port, port)
	writeFile(t, filepath.Join(dir, "users.yaml"), fmt.Sprintf("users:\n  - name: bob\n    password_hash: %q\n    home: incoming/bob/\n    permissions: [\"*\"]\n", hash))
	runConfig(t, dir, text, ftpAddr, metrics)
	login := func() *ftpConn {
		f := dialFTP(t, ftpAddr)
		f.cmd("USER bob")
		if code, msg := f.cmd("PASS pw"); code != 230 {
			t.Fatalf("login: %d %s", code, msg)
		}
		return f
	}
	a, b := login(), login()
	if code, msg := a.cmd("PASV"); code != 227 {
		t.Fatalf("first PASV: %d %s", code, msg)
	}
	if code, msg := b.cmd("PASV"); code != 425 {
		t.Fatalf("PASV with the only port taken: %d %s, want 425", code, msg)
	}
	_, body := httpGet(t, "http://"+metrics+"/metrics")
	for _, want := range []string{"ferry_ftp_passive_ports_exhausted_total 1", "ferry_ftp_passive_ports_in_use 1"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
