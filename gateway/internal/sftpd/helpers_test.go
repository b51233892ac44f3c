package sftpd_test

import (
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/sftpd"
	"github.com/ferrygw/ferry/gateway/internal/sftpd/sftptest"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

const testPassword = "correct horse battery staple"

// env is a server over a memstore with one full-permission user, "alice", who logs in with
// testPassword or key.
type env struct {
	srv   *sftptest.Server
	mem   *memstore.FS
	key   ssh.Signer
	priv  ed25519.PrivateKey // key's private half, for OpenSSH's -i
	alice *users.User
}

type envOpts struct {
	Config   sftpd.Config
	Users    []*users.User // besides alice
	Storage  func(*users.User) (storage.FS, error)
	Gate     sftpd.Gate
	Sessions sftpd.Sessions
	// WrapAuth decorates the users' authenticator (e.g. with a defender).
	WrapAuth func(sftpd.Authenticator) sftpd.Authenticator
}

func newEnv(t *testing.T, mod ...func(*envOpts)) *env {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{mem: memstore.New(), key: signer, priv: priv}
	e.alice = sftptest.NewUser(t, "alice", testPassword, e.key.PublicKey())
	o := envOpts{}
	for _, f := range mod {
		f(&o)
	}
	if o.Storage == nil {
		o.Storage = func(u *users.User) (storage.FS, error) { return access.Restrict(e.mem, u.Permissions), nil }
	}
	all := append([]*users.User{e.alice}, o.Users...)
	var auth sftpd.Authenticator
	if o.WrapAuth != nil {
		auth = o.WrapAuth(sftptest.NewAuth(all...))
	}
	e.srv = sftptest.StartWith(t, sftptest.Options{Config: o.Config, Storage: o.Storage, Auth: auth, Gate: o.Gate, Sessions: o.Sessions}, all...)
	return e
}

func (e *env) password() []ssh.AuthMethod { return []ssh.AuthMethod{ssh.Password(testPassword)} }
func (e *env) pubkey() []ssh.AuthMethod   { return []ssh.AuthMethod{ssh.PublicKeys(e.key)} }

func (e *env) client(t *testing.T, opts ...sftp.ClientOption) *sftp.Client {
	t.Helper()
	return e.srv.MustDial(t, "alice", e.pubkey(), opts...)
}

// rawClient logs in over a TCP connection the test can cut, to play a killed client.
func (e *env) rawClient(t *testing.T, opts ...sftp.ClientOption) (*sftp.Client, net.Conn) {
	t.Helper()
	nc, err := net.Dial("tcp", e.srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, e.srv.Addr, e.srv.ClientConfig("alice", e.pubkey()...))
	if err != nil {
		t.Fatal(err)
	}
	c, err := sftp.NewClient(ssh.NewClient(cc, chans, reqs), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); nc.Close() })
	return c, nc
}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func upload(t *testing.T, c *sftp.Client, name string, data []byte) error {
	t.Helper()
	f, err := c.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.ReadFrom(&sizedReader{data: data}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sizedReader reports its size so pkg/sftp's ReadFrom uses concurrent writes when enabled.
type sizedReader struct {
	data []byte
	off  int
}

func (r *sizedReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}
func (r *sizedReader) Size() int64 { return int64(len(r.data)) }

func download(t *testing.T, c *sftp.Client, name string) ([]byte, error) {
	t.Helper()
	f, err := c.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// statusCode is the SFTP status code inside err (0 if none).
func statusCode(err error) uint32 {
	var se *sftp.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

const (
	fxPermissionDenied = 3
	fxFailure          = 4
	fxOpUnsupported    = 8
)
