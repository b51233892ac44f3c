package ftpd

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/proxyproto"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
)

const (
	testUser = "alice"
	testPass = "s3cret-pass"
	roUser   = "reader"
)

// testAuth is a fixed user table.
type testAuth struct{ users map[string]*users.User }

var errBadLogin = fmt.Errorf("bad login: %w", users.ErrAuth)

func (a testAuth) CheckPassword(_ context.Context, name, password string, _ netip.Addr) (*users.User, error) {
	u, ok := a.users[name]
	if !ok || password != testPass {
		return nil, errBadLogin
	}
	return u, nil
}

func allPerms() users.Permissions {
	return users.Permissions{List: true, Download: true, Upload: true, Overwrite: true, Delete: true, Rename: true, Mkdir: true}
}

// env is a running server over one in-memory store shared by all users.
type env struct {
	t     *testing.T
	srv   *Server
	mem   *memstore.FS
	store *countingFS
	addr  string // control address, host:port
	port  string
	logs  *logbuf.Buffer
}

// startEnv starts a server with cfg (DevSelfSigned unless a cert is given) on 127.0.0.1:0.
func startEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	mem := memstore.New()
	return startEnvFS(t, cfg, mem, mem)
}

func startEnvFS(t *testing.T, cfg Config, backend storage.FS, mem *memstore.FS) *env {
	t.Helper()
	return startEnvServe(t, cfg, backend, mem, false)
}

// startEnvServe is startEnvFS; with demux the server runs as behind a load balancer: ServeDemux
// on a PROXY-protocol listener that trusts loopback (see lbDialer).
func startEnvServe(t *testing.T, cfg Config, backend storage.FS, mem *memstore.FS, demux bool, mods ...func(*Deps)) *env {
	t.Helper()
	if cfg.TLS.Mode != TLSNone && cfg.TLS.CertFile == "" && cfg.TLS.CertPEM == "" {
		cfg.TLS.DevSelfSigned = true
	}
	logs := &logbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store := &countingFS{FS: backend}
	ro := allPerms()
	ro.Upload, ro.Overwrite, ro.Delete, ro.Rename, ro.Mkdir = false, false, false, false, false
	auth := testAuth{users: map[string]*users.User{
		testUser: {Name: testUser, Permissions: allPerms()},
		roUser:   {Name: roUser, Permissions: ro},
	}}
	deps := Deps{
		Auth: auth,
		Storage: func(u *users.User) (storage.FS, error) {
			return access.Restrict(store, u.Permissions), nil
		},
		Logger: log,
	}
	for _, mod := range mods {
		mod(&deps)
	}
	srv, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve := srv.Serve
	if demux {
		l = proxyproto.NewListener(l, proxyproto.Config{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Logger: log})
		serve = srv.ServeDemux
	}
	done := make(chan error, 1)
	go func() { done <- serve(l) }()
	e := &env{t: t, srv: srv, mem: mem, store: store, addr: l.Addr().String(), logs: logs}
	_, e.port, _ = net.SplitHostPort(e.addr)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve returned %v, want ErrServerClosed", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return e
}

func clientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(16)} //nolint:gosec // test server
}

// dial logs in with jlaffaye/ftp over explicit TLS (plain when tlsOn is false).
func (e *env) dial(tlsOn bool, user string, opts ...ftp.DialOption) *ftp.ServerConn {
	e.t.Helper()
	c, err := e.tryDial(tlsOn, user, testPass, opts...)
	if err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	e.t.Cleanup(func() { c.Quit() })
	return c
}

func (e *env) tryDial(tlsOn bool, user, pass string, opts ...ftp.DialOption) (*ftp.ServerConn, error) {
	opts = append([]ftp.DialOption{ftp.DialWithTimeout(10 * time.Second)}, opts...)
	if tlsOn {
		opts = append(opts, ftp.DialWithExplicitTLS(clientTLS()))
	}
	c, err := ftp.Dial(e.addr, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.Login(user, pass); err != nil {
		c.Quit()
		return nil, err
	}
	return c, nil
}

// assertNothingStored checks that no object and no pending upload exist at name.
func (e *env) assertNothingStored(name string) {
	e.t.Helper()
	testtool.Eventually(e.t, 5*time.Second, "pending uploads to end", func() bool { return e.mem.Pending() == 0 })
	if data, err := e.mem.ReadFile(name); err == nil {
		e.t.Fatalf("%s exists with %d bytes after an interrupted upload", name, len(data))
	}
}

func randomData(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// countingFS counts bytes written to uploads so tests can wait until data reached the server.
type countingFS struct {
	storage.FS
	written atomic.Int64
}

func (c *countingFS) Create(ctx context.Context, name string, opts storage.CreateOptions) (storage.Upload, error) {
	up, err := c.FS.Create(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	return &countingUpload{Upload: up, n: &c.written}, nil
}

func (c *countingFS) Unwrap() storage.FS { return c.FS }

type countingUpload struct {
	storage.Upload
	n *atomic.Int64
}

func (u *countingUpload) Unwrap() storage.Upload { return u.Upload }

func (u *countingUpload) Write(p []byte) (int, error) {
	n, err := u.Upload.Write(p)
	u.n.Add(int64(n))
	return n, err
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "src")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func readAll(t *testing.T, r io.ReadCloser) []byte {
	t.Helper()
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hasLine(s, substr string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

func startEnvStorage(*users.User) (storage.FS, error) { return memstore.New(), nil }
