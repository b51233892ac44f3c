package app_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
)

// The attack tests run the assembled gateway (embedded S3 endpoint and event bus, SFTP, FTP with
// explicit TLS, metrics) and drive it with real clients bound to other loopback addresses:
// 127.0.0.1 (or .3) plays the attacker, 127.0.0.2 the real user. Only keys that exist on the
// gateway before the defender are required by the tests of admission and brute force, so the
// same tests run against older code to measure it.

const (
	userIP     = "127.0.0.2"
	attackerIP = "127.0.0.3"
	sharedPass = "s3cret-Pass"
)

// hostile is a running gateway for the attack tests.
type hostile struct {
	dir                                    string
	sftpAddr, ftpAddr, metricsAddr, s3Addr string
	usersFile                              string
	keyFile, keyLine                       string // a client key (private key file, authorized_keys line)
	askpass                                string // prints sharedPass, for OpenSSH's password prompt
	hash                                   string // bcrypt of sharedPass at users.HashCost
	logs                                   *logbuf.Buffer
}

// gwOptions are the parts of the configuration a test sets.
type gwOptions struct {
	listen, sftp, ftp, top string // extra lines under listen:, sftp:, ftp:, and at the top level
	passivePorts           string // ftp.passive_ports; "" = any free port
	users                  func(h *hostile) string
}

// startHostile starts the gateway with opts; its users file is opts.users' result.
func startHostile(t *testing.T, opts gwOptions) *hostile {
	t.Helper()
	dir := t.TempDir()
	h := &hostile{dir: dir, sftpAddr: testtool.FreeAddr(t), ftpAddr: testtool.FreeAddr(t), metricsAddr: testtool.FreeAddr(t), s3Addr: testtool.FreeAddr(t),
		usersFile: filepath.Join(dir, "users.yaml"), keyFile: filepath.Join(dir, "id_ed25519"), askpass: filepath.Join(dir, "askpass"),
		logs: &logbuf.Buffer{}}
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
	writeFile(t, h.keyFile, string(pem.EncodeToMemory(block)))
	h.keyLine = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
	if err := os.WriteFile(h.askpass, []byte("#!/bin/sh\necho '"+sharedPass+"'\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if h.hash, err = users.HashPassword(sharedPass); err != nil {
		t.Fatal(err)
	}
	writeFile(t, h.usersFile, opts.users(h))
	cfgFile := filepath.Join(dir, "ferry.yaml")
	writeFile(t, cfgFile, fmt.Sprintf(`listen:
  sftp: %q
  ftp: %q
  metrics: %q
%sstorage:
  s3:
    bucket: ferry
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
sftp:
%sftp:
  passive_ports: %q
  tls:
    mode: optional
    dev_self_signed: true
%sembedded:
  s3:
    listen: %q
    data_dir: data/s3
    access_key: ferry
    secret: ferrysecret
  events:
    dir: data/events
%s`, h.sftpAddr, h.ftpAddr, h.metricsAddr, indent(opts.listen), indent(opts.sftp+"banner: \"\"\n"), opts.passivePorts,
		indent(opts.ftp), h.s3Addr, opts.top))
	runGateway(t, cfgFile, h.logs, h.sftpAddr, h.ftpAddr)
	return h
}

func indent(lines string) string {
	var b strings.Builder
	for l := range strings.Lines(lines) {
		b.WriteString("  " + l)
	}
	return b.String()
}

// entry is one user of the users file, logging in with sharedPass and/or h's key.
func (h *hostile) entry(name, extra string) string {
	return fmt.Sprintf("  - name: %s\n    password_hash: %q\n    public_keys: [%q]\n    home: incoming/%s/\n    permissions: [\"*\"]\n%s",
		name, h.hash, h.keyLine, name, extra)
}

// setUsers replaces the users file (atomically, as an editor or `ferry user` does).
func (h *hostile) setUsers(t *testing.T, content string) time.Time {
	t.Helper()
	tmp := h.usersFile + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, h.usersFile); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

func (h *hostile) port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// metric returns the sum of every series of the metric name whose labels contain all of labels.
func (h *hostile) metric(t *testing.T, name string, labels ...string) int {
	t.Helper()
	resp, err := http.Get("http://" + h.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum := 0
	for line := range strings.Lines(string(body)) {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		series, _, _ := strings.Cut(line, " ")
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(series, l)
		}
		if ok {
			sum += counter(line, series)
		}
	}
	return sum
}

// sshAuth is how OpenSSH logs in.
type sshAuth int

const (
	byKey sshAuth = iota
	byPassword
	byKeyAndPassword
)

// openSSH returns the command running OpenSSH's sftp from bind as user, reading commands from
// its standard input (not -b: batch mode forbids password prompts).
func (h *hostile) openSSH(t *testing.T, ctx context.Context, bind, user string, auth sshAuth) *exec.Cmd {
	t.Helper()
	args := []string{"-P", h.port(h.sftpAddr), "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "BindAddress=" + bind, "-o", "ConnectTimeout=10", "-o", "NumberOfPasswordPrompts=1"}
	switch auth {
	case byKey:
		args = append(args, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", h.keyFile, "-o", "PreferredAuthentications=publickey")
	case byPassword:
		args = append(args, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password")
	case byKeyAndPassword:
		args = append(args, "-o", "IdentitiesOnly=yes", "-i", h.keyFile, "-o", "PreferredAuthentications=publickey,password")
	}
	cmd := exec.CommandContext(ctx, testtool.Path(t, "sftp"), append(args, user+"@127.0.0.1")...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+h.askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=none")
	cmd.Dir = h.dir
	return cmd
}

// sftpOnce logs in with OpenSSH's sftp, runs the commands and returns the output and how long
// the whole run took. ok is whether every command ran (the last line of output is its marker).
func (h *hostile) sftpOnce(t *testing.T, bind, user string, auth sshAuth, commands string) (out string, took time.Duration, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := h.openSSH(t, ctx, bind, user, auth)
	cmd.Stdin = strings.NewReader(commands + "!echo SFTP-DONE\nbye\n")
	start := time.Now()
	b, _ := cmd.CombinedOutput()
	took = time.Since(start)
	return string(b), took, strings.Contains(string(b), "\nSFTP-DONE\n") || strings.HasPrefix(string(b), "SFTP-DONE\n")
}

// curl runs curl against the FTP listener (explicit TLS) from bind and returns its output, its
// exit code (67: login refused) and how long it took.
func (h *hostile) curl(t *testing.T, bind, user string, args ...string) (out string, code int, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	all := append([]string{"-sS", "--max-time", "20", "--interface", bind, "--ssl-reqd", "-k", "--user", user + ":" + sharedPass}, args...)
	cmd := exec.CommandContext(ctx, testtool.Path(t, "curl"), all...)
	cmd.Dir = h.dir
	start := time.Now()
	b, err := cmd.CombinedOutput()
	took = time.Since(start)
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("curl: %v", err)
	}
	return string(b), code, took
}

func (h *hostile) ftpURL(path string) string { return "ftp://127.0.0.1:" + h.port(h.ftpAddr) + path }

// curlLogin logs in with curl and leaves (-I: login and PWD, no data connection, so what is
// timed is the login, not curl 7.88's occasional one-second wait before a data connection
// bound with --interface).
func (h *hostile) curlLogin(t *testing.T, bind, user string) (string, int, time.Duration) {
	t.Helper()
	return h.curl(t, bind, user, "-I", h.ftpURL("/"))
}

// interactive is a client program kept running, fed commands one at a time: a session that
// stays open across an edit of the users file.
type interactive struct {
	t      *testing.T
	name   string
	in     io.WriteCloser
	mu     sync.Mutex
	out    bytes.Buffer
	read   int // output already returned
	echo   string
	n      int
	exited chan struct{}
}

// startInteractive starts cmd with its standard input fed by do; echo is the client's command
// that prints its argument (to know when a command is done).
func startInteractive(t *testing.T, name string, cmd *exec.Cmd, echo string) *interactive {
	t.Helper()
	p := &interactive{t: t, name: name, echo: echo, exited: make(chan struct{})}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.in = in
	cmd.Stdout = p
	cmd.Stderr = p
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		in.Close()
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

func (p *interactive) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// do sends command and returns what the client printed until it was done with it; ok is false
// when the client exited (or did not finish within 20s) instead.
func (p *interactive) do(command string) (out string, ok bool) {
	p.t.Helper()
	p.n++
	marker := fmt.Sprintf("DONE-%d", p.n)
	if _, err := io.WriteString(p.in, command+"\n"+p.echo+" "+marker+"\n"); err != nil {
		return p.rest(), false
	}
	deadline := time.After(20 * time.Second)
	for {
		p.mu.Lock()
		all := p.out.String()
		p.mu.Unlock()
		if i := strings.Index(all[p.read:], "\n"+marker+"\n"); i >= 0 || strings.HasPrefix(all[p.read:], marker+"\n") {
			if i < 0 {
				i = -1
			}
			out := all[p.read : p.read+i+1]
			p.read += i + 1 + len(marker) + 1
			return out, true
		}
		select {
		case <-p.exited:
			return p.rest(), false
		case <-deadline:
			return p.rest(), false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *interactive) rest() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.out.String()[p.read:]
	p.read = p.out.Len()
	return out
}

// lftp starts an lftp session from bind logged in as user (explicit TLS), commands on stdin.
func (h *hostile) lftp(t *testing.T, bind, user string) *interactive {
	t.Helper()
	cmd := exec.Command(testtool.Path(t, "lftp"))
	cmd.Dir = h.dir
	p := startInteractive(t, "lftp "+user, cmd, "echo")
	setup := []string{"set cache:enable no", "set ssl:verify-certificate no", "set ftp:ssl-force yes", "set ftp:ssl-protect-data yes",
		"set net:max-retries 1", "set net:reconnect-interval-base 1", "set net:timeout 5", "set cmd:fail-exit no",
		"set net:socket-bind-ipv4 " + bind, "open -u " + user + "," + sharedPass + " " + h.ftpURL("")}
	for _, c := range setup {
		if out, ok := p.do(c); !ok || strings.TrimSpace(out) != "" {
			t.Fatalf("lftp %q: %q", c, out)
		}
	}
	return p
}
