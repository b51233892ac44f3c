package sftpd_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/sftpd"
	"github.com/ferrygw/ferry/gateway/internal/sftpd/sftptest"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

// SHA-1 key exchange, SHA-1 MACs and ssh-rsa (SHA-1) signatures, for the host key or a user's
// key, are refused by default: OpenSSH forcing any one of them cannot log in, while its
// defaults can. sftp.legacy_algorithms lets the same old clients in.
func TestOpenSSHRefusesSHA1Algorithms(t *testing.T) {
	bin := testtool.Path(t, "sftp")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaHost, err := ssh.NewSignerFromKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edHost, err := ssh.NewSignerFromKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	// The user logs in with an RSA key, which OpenSSH can sign with ssh-rsa when told to.
	userKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	userSigner, err := ssh.NewSignerFromKey(userKey)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(userKey, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id_rsa")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		opts []string
		sha1 bool // needs a legacy algorithm
	}{
		{"defaults", nil, false},
		{"kex diffie-hellman-group14-sha1", []string{"-o", "KexAlgorithms=diffie-hellman-group14-sha1"}, true},
		{"kex diffie-hellman-group1-sha1", []string{"-o", "KexAlgorithms=diffie-hellman-group1-sha1"}, true},
		{"kex diffie-hellman-group-exchange-sha1", []string{"-o", "KexAlgorithms=diffie-hellman-group-exchange-sha1"}, true},
		{"mac hmac-sha1", []string{"-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha1"}, true},
		{"mac hmac-sha1-96", []string{"-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha1-96"}, true},
		{"host key ssh-rsa", []string{"-o", "HostKeyAlgorithms=ssh-rsa"}, true},
		{"user key ssh-rsa", []string{"-o", "PubkeyAcceptedAlgorithms=ssh-rsa"}, true},
		{"host key rsa-sha2-512", []string{"-o", "HostKeyAlgorithms=rsa-sha2-512"}, false},
		{"user key rsa-sha2-256", []string{"-o", "PubkeyAcceptedAlgorithms=rsa-sha2-256"}, false},
	}
	for _, legacy := range []bool{false, true} {
		alice := sftptest.NewUser(t, "alice", testPassword, userSigner.PublicKey())
		srv := sftptest.StartWith(t, sftptest.Options{
			Config: sftpd.Config{HostKeys: []ssh.Signer{edHost, rsaHost}, LegacyAlgorithms: legacy},
			Storage: func(u *users.User) (storage.FS, error) {
				return access.Restrict(memstore.New(), u.Permissions), nil
			},
		}, alice)
		if legacy && !strings.Contains(srv.Logs.String(), "legacy SSH algorithms") {
			t.Errorf("no warning at start with legacy algorithms on:\n%s", srv.Logs)
		}
		for _, c := range cases {
			t.Run(c.name+map[bool]string{false: "", true: " legacy"}[legacy], func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				args := []string{"-b", "-", "-P", strconv.Itoa(srv.Port), "-F", "/dev/null",
					"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
					"-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-i", keyFile}
				args = append(args, c.opts...)
				cmd := exec.CommandContext(ctx, bin, append(args, "alice@127.0.0.1")...)
				cmd.Stdin = strings.NewReader("pwd\n")
				out, err := cmd.CombinedOutput()
				want := !c.sha1 || legacy
				if got := err == nil && strings.Contains(string(out), "Remote working directory: /"); got != want {
					t.Errorf("sftp %v: logged in = %v, want %v (%v)\n%s", c.opts, got, want, err, out)
				}
			})
		}
	}
}
