package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

type result struct {
	code           int
	stdout, stderr string
}

func ferry(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newKey(t *testing.T) (privPEM []byte, authorized string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	return pem.EncodeToMemory(block), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " test@host"
}

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), 10)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// setup writes a valid config, users file and one host key into a new folder.
func setup(t *testing.T) (dir, cfg, usersFile string) {
	t.Helper()
	dir = t.TempDir()
	keyPEM, _ := newKey(t)
	write(t, filepath.Join(dir, "keys", "ssh_host_ed25519_key"), string(keyPEM))
	cfg = filepath.Join(dir, "ferry.yaml")
	write(t, cfg, "storage:\n  s3:\n    bucket: ferry\nhost_keys:\n  paths: [keys/ssh_host_ed25519_key]\n  generate: false\n")
	usersFile = filepath.Join(dir, "users.yaml")
	write(t, usersFile, "# our users\nusers:\n  - name: alice\n    password_hash: \""+hash(t, "pw")+"\"\n    home: alice/\n    permissions: [\"*\"]\n")
	return dir, cfg, usersFile
}

func TestTopLevel(t *testing.T) {
	for _, tt := range []struct {
		args       []string
		code       int
		out, errIn string
	}{
		{nil, 2, "", "Usage:"},
		{[]string{"help"}, 0, "ferry user add NAME", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"version"}, 0, "ferry dev", ""},
		{[]string{"user"}, 2, "", "ferry user passwd NAME"},
		{[]string{"user", "rename"}, 2, "", `unknown command "rename"`},
		{[]string{"check", "-h"}, 0, "", "Usage: ferry check"},
		{[]string{"check", "--bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{[]string{"check", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"user", "add"}, 2, "", "want 1 argument(s), got 0"},
		{[]string{"user", "add", "bob"}, 2, "", "--home is required"},
		{[]string{"serve", "--config", "/nonexistent/ferry.yaml"}, 1, "", "no such file"},
	} {
		r := ferry(t, "", tt.args...)
		if r.code != tt.code || !strings.Contains(r.stdout, tt.out) || !strings.Contains(r.stderr, tt.errIn) {
			t.Errorf("ferry %q = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q",
				tt.args, r.code, r.stdout, r.stderr, tt.code, tt.out, tt.errIn)
		}
	}
}

// TestServeRunsUntilCancelled: serve starts the gateway from the config and returns 0 when its
// context ends (SIGINT/SIGTERM in main), after draining.
func TestServeRunsUntilCancelled(t *testing.T) {
	_, cfg, _ := setup(t)
	addr := testtool.FreeAddr(t)
	write(t, cfg, "listen:\n  sftp: "+addr+"\n  metrics: \"\"\nstorage:\n  s3:\n    bucket: ferry\n    endpoint: http://127.0.0.1:1\n"+
		"host_keys:\n  paths: [keys/ssh_host_ed25519_key]\n  generate: false\n")
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "y")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfg}, strings.NewReader(""), &out, &errb) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve never listened on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exit code %d after cancel", code)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop after cancel")
	}
}

func TestCheck(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		_, cfg, usersFile := setup(t)
		r := ferry(t, "", "check", "--config", cfg)
		want := "ok: " + cfg + ": 1 user(s) in " + usersFile + ", 1 host key(s)\n"
		if r.code != 0 || r.stdout != want || r.stderr != "" {
			t.Errorf("got %+v\nwant stdout %q", r, want)
		}
	})
	t.Run("keys to generate", func(t *testing.T) {
		dir, cfg, _ := setup(t)
		write(t, cfg, "storage:\n  s3:\n    bucket: ferry\n")
		r := ferry(t, "", "check", "--config", cfg)
		if r.code != 0 || !strings.Contains(r.stdout, "1 host key(s), 1 to be generated on first start") {
			t.Errorf("got %+v", r)
		}
		if _, err := os.Stat(filepath.Join(dir, "keys", "ssh_host_rsa_key")); err == nil {
			t.Error("check generated a key")
		}
	})
	t.Run("every problem", func(t *testing.T) {
		dir, cfg, usersFile := setup(t)
		write(t, cfg, "storage:\n  s3:\n    bucket: ferry\n    part_size: 1MiB\nhost_keys:\n  paths: [keys/ssh_host_ed25519_key, keys/broken, keys/missing]\n  generate: false\n")
		write(t, filepath.Join(dir, "keys", "broken"), "not a key\n")
		write(t, usersFile, "users:\n  - name: alice\n    home: /abs\n    permissions: [fly]\n")
		r := ferry(t, "", "check", "--config", cfg)
		for _, want := range []string{
			cfg + ":4: storage.s3.part_size: must be between 5MiB and 5GiB",
			usersFile + ":2: users[0]: no credentials",
			usersFile + ":3: users[0].home: \"/abs\" must not start",
			usersFile + ":4: users[0].permissions: unknown permission \"fly\"",
			filepath.Join(dir, "keys", "broken"),
			filepath.Join(dir, "keys", "missing") + ": host key file does not exist",
			"check: 6 problem(s)",
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		if r.code != 1 || r.stdout != "" {
			t.Errorf("code %d stdout %q", r.code, r.stdout)
		}
	})
	t.Run("users FTP cannot log in", func(t *testing.T) {
		_, cfg, usersFile := setup(t)
		_, keyLine := newKey(t)
		hash, err := users.HashPassword("pw")
		if err != nil {
			t.Fatal(err)
		}
		entry := func(name, extra string) string {
			return "  - name: " + name + "\n    password_hash: \"" + hash + "\"\n    public_keys: [\"" + keyLine + "\"]\n" +
				"    auth: both\n    home: " + name + "/\n    permissions: [list]\n" + extra
		}
		// ftp only by default: reported, not refused.
		write(t, usersFile, "users:\n"+entry("carol", "")+entry("dave", "    protocols: [sftp]\n")+
			entry("erin", "    ftp_password_only: true\n"))
		r := ferry(t, "", "check", "--config", cfg)
		if r.code != 0 || !strings.Contains(r.stderr, "warning: "+usersFile+":5: users[0].auth: auth: both asks for an SSH key, which FTP cannot offer") ||
			strings.Count(r.stderr, "warning:") != 1 {
			t.Errorf("got %+v", r)
		}
		// ftp written for such a user: a problem.
		write(t, usersFile, "users:\n"+entry("carol", "    protocols: [sftp, ftp]\n"))
		r = ferry(t, "", "check", "--config", cfg)
		if r.code != 1 || !strings.Contains(r.stderr, usersFile+":8: users[0].protocols: auth: both asks for an SSH key") {
			t.Errorf("got %+v", r)
		}
	})
	t.Run("missing env var still checks users", func(t *testing.T) {
		_, cfg, usersFile := setup(t)
		write(t, cfg, "storage:\n  s3:\n    bucket: \"${FERRY_CLI_TEST_UNSET}\"\nhost_keys:\n  paths: [keys/ssh_host_ed25519_key]\n")
		write(t, usersFile, "users:\n  - name: bob\n")
		r := ferry(t, "", "check", "--config", cfg)
		for _, want := range []string{"environment variable FERRY_CLI_TEST_UNSET is not set", usersFile + ":2: users[0]: no credentials"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
	})
}

func TestUserCommands(t *testing.T) {
	dir, cfg, usersFile := setup(t)
	_, keyLine := newKey(t)
	keyFile := filepath.Join(dir, "bob.pub")
	write(t, keyFile, "# bob's keys\n"+keyLine+"\n")
	steps := []struct {
		name     string
		stdin    string
		args     []string
		code     int
		out, err string
	}{
		{"add with password", "s3cret\n", []string{"user", "add", "carol", "--config", cfg, "--home", "in/carol", "--password-stdin", "--perm", "list,upload"}, 0, "", "added carol"},
		{"add key only, flags first", "", []string{"user", "add", "--users", usersFile, "--key", keyFile, "--key", keyLine, "--perm", "*", "--cidr", "127.0.0.0/8", "bob", "--home", "in/bob/"}, 0, "", "added bob"},
		{"add duplicate", "", []string{"user", "add", "bob", "--config", cfg, "--home", "x", "--key", keyLine}, 1, "", "user already exists"},
		{"add without credentials", "", []string{"user", "add", "dan", "--config", cfg, "--home", "x"}, 1, "", "no credentials"},
		{"add with bad key", "", []string{"user", "add", "dan", "--config", cfg, "--home", "x", "--key", "ssh-ed25519 nope"}, 1, "", "public_keys[0]: not an SSH public key"},
		{"add with missing key file", "", []string{"user", "add", "dan", "--config", cfg, "--home", "x", "--key", "/no/such.pub"}, 1, "", "neither a key file nor"},
		{"add with empty password", "\n", []string{"user", "add", "dan", "--config", cfg, "--home", "x", "--password-stdin"}, 1, "", "empty password"},
		{"add both over ftp", "pw\n", []string{"user", "add", "dan", "--config", cfg, "--home", "x", "--password-stdin", "--key", keyLine, "--auth", "both", "--protocols", "sftp,ftp"}, 1, "", "FTP cannot offer"},
		{"add both, sftp only", "pw\n", []string{"user", "add", "dan", "--config", cfg, "--home", "x", "--password-stdin", "--key", keyLine, "--auth", "both", "--protocols", "sftp"}, 0, "", "added dan"},
		{"del dan", "", []string{"user", "del", "dan", "--config", cfg}, 0, "", "removed dan"},
		{"list", "", []string{"user", "list", "--config", cfg}, 0, "", ""},
		{"passwd", "newpw\n", []string{"user", "passwd", "alice", "--config", cfg}, 0, "", "password of alice set"},
		{"passwd unknown", "x\n", []string{"user", "passwd", "zed", "--config", cfg}, 1, "", "no such user"},
		{"del", "", []string{"user", "del", "carol", "--config", cfg}, 0, "", "removed carol"},
		{"del unknown", "", []string{"user", "del", "carol", "--config", cfg}, 1, "", "no such user"},
	}
	for _, s := range steps {
		r := ferry(t, s.stdin, s.args...)
		if r.code != s.code || !strings.Contains(r.stdout, s.out) || !strings.Contains(r.stderr, s.err) {
			t.Fatalf("%s: ferry %q = %d\nstdout: %s\nstderr: %s", s.name, s.args, r.code, r.stdout, r.stderr)
		}
		if s.name == "list" {
			checkList(t, r.stdout)
		}
	}
	list, _, err := users.Load(usersFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "alice" || list[1].Name != "bob" {
		t.Fatalf("users after the steps: %v", list)
	}
	if bcrypt.CompareHashAndPassword([]byte(list[0].PasswordHash), []byte("newpw")) != nil {
		t.Error("passwd did not set the new password")
	}
	if cost, _ := bcrypt.Cost([]byte(list[0].PasswordHash)); cost != users.HashCost {
		t.Errorf("cost %d", cost)
	}
	bob := list[1]
	if len(bob.PublicKeys) != 2 || bob.Home != "in/bob/" || bob.Permissions.ReadOnly() || len(bob.AllowedCIDRs) != 1 {
		t.Errorf("bob = %+v", bob)
	}
	data, _ := os.ReadFile(usersFile)
	if !strings.HasPrefix(string(data), "# our users\n") {
		t.Errorf("comment lost:\n%s", data)
	}
}

func checkList(t *testing.T, out string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("list:\n%s", out)
	}
	for _, want := range []string{"NAME", "alice", "carol", "bob"} {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, want+" ")
		}
		if !found {
			t.Errorf("list lacks %s:\n%s", want, out)
		}
	}
	for _, want := range []string{"in/carol/", "list,upload", "password", "2 keys", "127.0.0.0/8", "enabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "$2a$") {
		t.Errorf("list prints a hash:\n%s", out)
	}
}

func TestHashPassword(t *testing.T) {
	r := ferry(t, "correct horse\r\n", "hash-password")
	h := strings.TrimSpace(r.stdout)
	if r.code != 0 || bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse")) != nil {
		t.Fatalf("got %+v", r)
	}
	if cost, _ := bcrypt.Cost([]byte(h)); cost != 12 {
		t.Errorf("cost %d, want 12", cost)
	}
	for _, in := range []string{"", "\n", strings.Repeat("x", 73) + "\n"} {
		if r := ferry(t, in, "hash-password"); r.code != 1 || r.stdout != "" {
			t.Errorf("input %q: %+v", in, r)
		}
	}
}

func TestCheckRoutes(t *testing.T) {
	good := ferry(t, "", "check", "--routes", "../../../configs/pipeline.yaml")
	if good.code != 0 || !strings.Contains(good.stdout, "1 route(s)") {
		t.Errorf("check --routes pipeline.yaml = %+v", good)
	}
	bad := filepath.Join(t.TempDir(), "routes.yaml")
	write(t, bad, "routes:\n  - name: x\n    bogus: 1\n")
	r := ferry(t, "", "check", "--routes", bad)
	if r.code != 1 || !strings.Contains(r.stderr, bad+":3: routes[0]: unknown key \"bogus\"") || !strings.Contains(r.stderr, "dataset is required") {
		t.Errorf("check --routes with problems = %+v", r)
	}
	// A notice template naming a field a notice does not have is found in every branch, at its
	// line inside the block.
	write(t, bad, `datasets:
  d:
    templates:
      rejected:
        body: |
          {{.File.Name}} was rejected.
          {{with .File.Line}}At line {{.}}: {{$.File.Reson}}{{end}}
routes:
  - {name: x, match: {prefix: in/}, transforms: [{name: copy}], output: "out/{name}", quarantine: q/, dataset: d}
`)
	r = ferry(t, "", "check", "--routes", bad)
	if r.code != 1 || !strings.Contains(r.stderr, bad+":7: datasets.d.templates.rejected.body: template rejected.body: a file has no field or method Reson") {
		t.Errorf("check --routes with a bad template = %+v", r)
	}
}

// ferry check warns, without failing, about settings that expose the gateway: an embedded S3
// endpoint reachable from other hosts, FTP without TLS, profiling, and plaintext FTP on an
// address other hosts can reach. Each warning names the file and line.
func TestCheckWarnings(t *testing.T) {
	base := "storage:\n  s3:\n    bucket: ferry\nhost_keys:\n  paths: [keys/ssh_host_ed25519_key]\n  generate: false\n"
	tests := []struct {
		name  string
		extra string   // appended to base
		want  []string // each a warning line's end; none when empty
	}{
		{"loopback only", "listen:\n  ftp: 127.0.0.1:2121\n  pprof: \"\"\nftp:\n  tls:\n    mode: required\n    dev_self_signed: true\n", nil},
		{"embedded S3 on every interface", "embedded:\n  s3:\n    listen: 0.0.0.0:9000\n    data_dir: data\n    access_key: k\n    secret: s\n",
			[]string{":9: embedded.s3.listen: the embedded S3 endpoint listens on 0.0.0.0:9000, reachable from other hosts"}},
		{"embedded S3 on a LAN address", "embedded:\n  s3:\n    listen: 192.0.2.10:9000\n    data_dir: data\n    access_key: k\n    secret: s\n",
			[]string{":9: embedded.s3.listen: the embedded S3 endpoint listens on 192.0.2.10:9000, reachable from other hosts"}},
		{"FTP without TLS on loopback", "listen:\n  ftp: 127.0.0.1:2121\nftp:\n  tls:\n    mode: none\n",
			[]string{":11: ftp.tls.mode: FTP without TLS: passwords and files cross the network in clear"}},
		{"profiling", "listen:\n  pprof: 127.0.0.1:6060\n",
			[]string{":8: listen.pprof: profiling is enabled"}},
		{"plaintext FTP on a public address", "listen:\n  ftp: 0.0.0.0:2121\nftp:\n  tls:\n    mode: optional\n    dev_self_signed: true\n",
			[]string{":8: listen.ftp: plaintext FTP (ftp.tls.mode optional) on 0.0.0.0:2121, reachable from other hosts"}},
		{"FTP without TLS on a public address", "listen:\n  ftp: :2121\nftp:\n  tls:\n    mode: none\n",
			[]string{":11: ftp.tls.mode: FTP without TLS", ":8: listen.ftp: plaintext FTP (ftp.tls.mode none) on :2121, reachable from other hosts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, cfg, _ := setup(t)
			write(t, cfg, base+tt.extra)
			r := ferry(t, "", "check", "--config", cfg)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "ok: ") {
				t.Fatalf("warnings must not fail the check: %+v", r)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(tt.want) == 0 {
				if r.stderr != "" {
					t.Errorf("unexpected warnings:\n%s", r.stderr)
				}
				return
			}
			if len(lines) != len(tt.want) {
				t.Errorf("%d warning line(s), want %d:\n%s", len(lines), len(tt.want), r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, "warning: "+cfg+w) {
					t.Errorf("stderr lacks %q:\n%s", "warning: "+cfg+w, r.stderr)
				}
			}
		})
	}
}
