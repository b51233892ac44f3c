package app_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// gateway is the assembled ferry (as `ferry serve` runs it) over versitygw, serving SFTP and
// FTP with optional explicit TLS to alice, who logs in with password "s3cret" or keyFile.
type gateway struct {
	s3                *s3test.Server
	sftpAddr, ftpAddr string
	keyFile           string // alice's ed25519 private key (OpenSSH format)
	home              string // alice's key prefix
	logs              *logbuf.Buffer
}

const alicePassword = "s3cret"

func startGateway(t *testing.T) *gateway {
	t.Helper()
	srv := s3test.Start(t)
	dir := t.TempDir()
	hash, err := users.HashPassword(alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{s3: srv, sftpAddr: testtool.FreeAddr(t), ftpAddr: testtool.FreeAddr(t), home: "partners/alice/",
		keyFile: filepath.Join(dir, "id_ed25519"), logs: &logbuf.Buffer{}}
	writeFile(t, g.keyFile, string(pem.EncodeToMemory(block)))
	writeFile(t, filepath.Join(dir, "users.yaml"), fmt.Sprintf(`users:
  - name: alice
    password_hash: %q
    public_keys: [%q]
    home: %s
    permissions: ["*"]
`, hash, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))), g.home))
	cfgFile := filepath.Join(dir, "ferry.yaml")
	writeFile(t, cfgFile, fmt.Sprintf(`listen:
  sftp: %q
  ftp: %q
  metrics: ""
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
`, g.sftpAddr, g.ftpAddr, srv.Bucket, srv.Endpoint, srv.Region))
	runGateway(t, cfgFile, g.logs, g.sftpAddr, g.ftpAddr)
	return g
}

func (g *gateway) port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// ftp logs alice in over explicit TLS; mlsd false makes the client list with LIST.
func (g *gateway) ftp(t *testing.T, mlsd bool) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(g.ftpAddr, ftp.DialWithTimeout(10*time.Second), ftp.DialWithDisabledMLSD(!mlsd),
		ftp.DialWithExplicitTLS(&tls.Config{InsecureSkipVerify: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Quit() })
	if err := c.Login("alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	return c
}

// openSSH runs a batch of OpenSSH sftp commands as alice in dir and returns the output.
func (g *gateway) openSSH(t *testing.T, dir, batch string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testtool.Path(t, "sftp"), "-b", "-", "-P", g.port(g.sftpAddr), "-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-i", g.keyFile, "alice@127.0.0.1")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(batch)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sftp batch: %v\n%s\nbatch:\n%s", err, out, batch)
	}
	return string(out)
}

func writeLocal(t *testing.T, path string, data []byte, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}
