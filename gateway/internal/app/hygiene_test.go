package app_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/config"
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
