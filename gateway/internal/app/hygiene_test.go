package app_test

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/app"
	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/logbuf"
	"github.com/ferrygw/ferry/gateway/s3test"
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
	dir := t.TempDir()
	sftp, s3, metrics, pprof := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
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
	dir := t.TempDir()
	sftp, s3addr := freeAddr(t), freeAddr(t)
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

	waitFor(t, 5*time.Second, "the presigned GETs in the debug log", func() bool {
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
