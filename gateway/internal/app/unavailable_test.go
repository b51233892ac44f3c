package app_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ferrygw/ferry/gateway/ferryproc"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// S3 unreachable when the gateway starts: it starts all the same, /readyz says why it is not
// ready, and every login gets a temporary refusal that says so — SFTP clients an SSH disconnect
// "service temporarily unavailable" (reason 7; OpenSSH prints it), FTP clients a 421 — instead of
// a session that cannot store anything. Within about a second of S3 coming back it serves.
func TestS3UnreachableAtStart(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	srv.Stop()
	dir := t.TempDir()
	hash, err := users.HashPassword(alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "users.yaml"), fmt.Sprintf("users:\n  - name: alice\n    password_hash: %q\n    home: alice/\n    permissions: [\"*\"]\n", hash))
	sftpAddr, ftpAddr, healthAddr, metricsAddr := testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t)
	runConfig(t, dir, fmt.Sprintf(`listen:
  sftp: %q
  ftp: %q
  health: %q
  metrics: %q
storage:
  s3: {bucket: %s, endpoint: %s, region: %s, path_style: true}
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
ftp:
  passive_ports: ""
  tls: {mode: none}
memory_limit: 0
`, sftpAddr, ftpAddr, healthAddr, metricsAddr, srv.Bucket, srv.Endpoint, srv.Region), sftpAddr, ftpAddr, healthAddr)

	eventuallyReady(t, healthAddr, 503, "s3: ", 15*time.Second)
	_, body := httpGet(t, "http://"+healthAddr+"/readyz")
	t.Logf("/readyz with S3 away: %q", body)

	const wantSFTP = "service temporarily unavailable (storage unreachable); try again later"
	if _, err := dialSFTP(sftpAddr, "alice", alicePassword); err == nil || !strings.Contains(err.Error(), "reason 7") || !strings.Contains(err.Error(), wantSFTP) {
		t.Errorf("x/crypto/ssh login with S3 away: %v, want disconnect reason 7 %q", err, wantSFTP)
	}
	// OpenSSH prints the server's reason ("Received disconnect from …:7: …") and exits 255.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testtool.Path(t, "sftp"), "-b", "-", "-P", portOf(sftpAddr), "-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "alice@127.0.0.1")
	cmd.Stdin = strings.NewReader("ls\n")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), wantSFTP) {
		t.Errorf("OpenSSH sftp with S3 away: %v\n%s", err, out)
	}
	t.Logf("OpenSSH sftp says: %s", strings.TrimSpace(string(out)))
	if _, err := ftp.Dial(ftpAddr, ftp.DialWithTimeout(5*time.Second)); err == nil || !strings.Contains(err.Error(), "421") || !strings.Contains(err.Error(), "Service temporarily unavailable") {
		t.Errorf("FTP with S3 away: %v, want 421", err)
	}
	// curl maps a 421 greeting to its exit code 28 ("Timeout was reached"); -v shows the reply.
	curl := exec.CommandContext(ctx, testtool.Path(t, "curl"), "-v", "-sS", "--user", "alice:"+alicePassword, "ftp://"+ftpAddr+"/")
	cout, err := curl.CombinedOutput()
	if err == nil || !strings.Contains(string(cout), "< 421 Service temporarily unavailable") {
		t.Errorf("curl with S3 away: %v\n%s", err, cout)
	}
	t.Logf("curl -v shows: %s", cout[strings.Index(string(cout), "< 421"):])
	families, err := ferryproc.Scrape(ctx, metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"sftp", "ftp"} {
		if n := ferryproc.Sum(families, "ferry_connections_refused_total", map[string]string{"protocol": p, "reason": "unavailable"}); n < 1 {
			t.Errorf("ferry_connections_refused_total{protocol=%q,reason=\"unavailable\"} = %v", p, n)
		}
	}

	srv.Restart(t)
	back := time.Now()
	deadline := back.Add(10 * time.Second)
	for {
		c, err := dialSFTP(sftpAddr, "alice", alicePassword)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SFTP login 10s after S3 came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("SFTP logins work %s after S3 came back", time.Since(back).Round(10*time.Millisecond))
	c, err := ftp.Dial(ftpAddr, ftp.DialWithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("FTP after S3 came back: %v", err)
	}
	defer c.Quit()
	if err := c.Login("alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	if err := c.Stor("back.txt", strings.NewReader("stored once S3 was back\n")); err != nil {
		t.Errorf("upload after S3 came back: %v", err)
	}
	eventuallyReady(t, healthAddr, 200, "ready", 10*time.Second)
}

func portOf(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
