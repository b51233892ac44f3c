package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/app"
	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// runConfig runs the gateway from the config text (written to ferry.yaml in dir) until the test
// ends, waiting for every address in wait to listen.
func runConfig(t *testing.T, dir, text string, wait ...string) *logbuf.Buffer {
	t.Helper()
	cfgFile := filepath.Join(dir, "ferry.yaml")
	writeFile(t, cfgFile, text)
	logs := &logbuf.Buffer{}
	runGateway(t, cfgFile, logs, wait...)
	return logs
}

// runGateway runs the gateway from cfgFile until the test ends, logging into logs, and returns
// once every address in wait listens. Run must end without an error; a failed test prints the
// gateway's log.
func runGateway(t *testing.T, cfgFile string, logs *logbuf.Buffer, wait ...string) {
	t.Helper()
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs)
		}
	})
	for _, a := range wait {
		waitListening(t, a, done, logs)
	}
}

// httpGet returns the status and body of GET url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventuallyReady polls /readyz until it answers code with a body containing want.
func eventuallyReady(t *testing.T, addr string, code int, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, body := httpGet(t, "http://"+addr+"/readyz")
		if got == code && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %q after %s, want %d containing %q", got, body, within, code, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// /readyz fails while S3 is unreachable and recovers when it is back; /healthz (liveness, on the
// health and the metrics listener) never depends on S3.
func TestReadinessFollowsS3(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users.yaml"), "users: []\n")
	sftpAddr, healthAddr, metricsAddr := testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t)
	runConfig(t, dir, fmt.Sprintf(`listen:
  sftp: %q
  health: %q
  metrics: %q
storage:
  s3: {bucket: %s, endpoint: %s, region: %s, path_style: true}
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
memory_limit: 0
`, sftpAddr, healthAddr, metricsAddr, srv.Bucket, srv.Endpoint, srv.Region), sftpAddr, healthAddr, metricsAddr)

	live := func(step string) {
		t.Helper()
		for _, a := range []string{healthAddr, metricsAddr} {
			if code, body := httpGet(t, "http://"+a+"/healthz"); code != 200 || body != "ok\n" {
				t.Errorf("%s: %s/healthz = %d %q", step, a, code, body)
			}
		}
	}
	eventuallyReady(t, healthAddr, 200, "ready", 10*time.Second)
	live("S3 up")
	if code, _ := httpGet(t, "http://"+healthAddr+"/metrics"); code != 404 {
		t.Errorf("/metrics on the health listener = %d, want 404 (only /healthz and /readyz)", code)
	}

	srv.Stop()
	start := time.Now()
	eventuallyReady(t, healthAddr, 503, "s3: ", 20*time.Second)
	t.Logf("not ready %s after S3 went away", time.Since(start).Round(100*time.Millisecond))
	live("S3 down")

	srv.Restart(t)
	start = time.Now()
	eventuallyReady(t, healthAddr, 200, "ready", 20*time.Second)
	t.Logf("ready %s after S3 came back", time.Since(start).Round(100*time.Millisecond))
}

// The embedded default keeps its users file as an object in its own endpoint, edited through the
// same code as `ferry user`: the gateway starts not ready (no such object), then loads the users
// once an admin adds one, and they log in.
func TestEmbeddedUsersFileOnS3(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sftpAddr, healthAddr, s3Addr := testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t)
	text := fmt.Sprintf(`listen:
  sftp: %q
  health: %q
  metrics: ""
storage:
  s3:
    bucket: ferry
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: s3://ferry/config/users.yaml
users_poll_interval: 1s
memory_limit: 0
embedded:
  s3:
    listen: %q
    data_dir: data/s3
    access_key: ferry
    secret: ferrysecret
`, sftpAddr, healthAddr, s3Addr)
	runConfig(t, dir, text, sftpAddr, healthAddr)
	eventuallyReady(t, healthAddr, 503, "users not loaded: users: read s3://ferry/config/users.yaml: file does not exist", 10*time.Second)

	cfg, err := config.Load(filepath.Join(dir, "ferry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := app.UsersSource(t.Context(), cfg, cfg.UsersFile)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := users.HashPassword("demo")
	if err != nil {
		t.Fatal(err)
	}
	if err := users.Add(t.Context(), src, users.Entry{Name: "demo", PasswordHash: hash, Home: "incoming/demo/", Permissions: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	eventuallyReady(t, healthAddr, 200, "ready", 10*time.Second)
	sc := sftpClient(t, sftpAddr, "demo", "demo")
	if _, err := sc.ReadDir("/"); err != nil {
		t.Errorf("demo's session: %v", err)
	}
}
