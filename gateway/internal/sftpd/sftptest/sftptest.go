// Package sftptest runs an in-process Ferry SFTP server on 127.0.0.1 for tests and benchmarks.
package sftptest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/sftpd"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
)

// Server is a running sftpd.Server.
type Server struct {
	Addr    string        // 127.0.0.1:PORT
	Host    string        // 127.0.0.1
	Port    int           //
	HostKey ssh.PublicKey // to pin in clients
	SFTP    *sftpd.Server
	Logs    *logbuf.Buffer // everything the server logged (at debug level)
}

// Options customise StartWith. Zero fields get test defaults.
type Options struct {
	Config sftpd.Config // HostKeys defaults to a fresh ed25519 key
	// Storage defaults to the FS given to Start, restricted by each user's permissions.
	Storage func(*users.User) (storage.FS, error)
	Auth    sftpd.Authenticator // defaults to NewAuth(users...)
	// Gate and Sessions are passed to the server as they are (nil: none).
	Gate     sftpd.Gate
	Sessions sftpd.Sessions
}

// Start serves fsys (every user sees it as their home, limited by their permissions) until the
// test ends.
func Start(t testing.TB, fsys storage.FS, us ...*users.User) *Server {
	t.Helper()
	return StartWith(t, Options{Storage: func(u *users.User) (storage.FS, error) {
		return access.Restrict(fsys, u.Permissions, access.User(u.Name)), nil
	}}, us...)
}

// StartWith starts a server with opts.
func StartWith(t testing.TB, opts Options, us ...*users.User) *Server {
	t.Helper()
	cfg := opts.Config
	if len(cfg.HostKeys) == 0 {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		cfg.HostKeys = []ssh.Signer{signer}
	}
	auth := opts.Auth
	if auth == nil {
		auth = NewAuth(us...)
	}
	logs := &logbuf.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).
		With("component", "sftpd", "protocol", "sftp")
	srv, err := sftpd.New(cfg, sftpd.Deps{Auth: auth, Storage: opts.Storage, Logger: logger,
		Gate: opts.Gate, Sessions: opts.Sessions})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("sftptest: shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, sftpd.ErrServerClosed) {
			t.Errorf("sftptest: Serve returned %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	ap := l.Addr().(*net.TCPAddr)
	return &Server{Addr: ap.String(), Host: ap.IP.String(), Port: ap.Port, HostKey: cfg.HostKeys[0].PublicKey(), SFTP: srv, Logs: logs}
}

// ClientConfig is an SSH client configuration that pins the server's host key.
func (s *Server) ClientConfig(user string, auth ...ssh.AuthMethod) *ssh.ClientConfig {
	return &ssh.ClientConfig{User: user, Auth: auth, HostKeyCallback: ssh.FixedHostKey(s.HostKey), Timeout: 10 * time.Second}
}

// Dial logs in and starts an SFTP client; both are closed when the test ends.
func (s *Server) Dial(t testing.TB, user string, auth []ssh.AuthMethod, opts ...sftp.ClientOption) (*sftp.Client, *ssh.Client, error) {
	t.Helper()
	conn, err := ssh.Dial("tcp", s.Addr, s.ClientConfig(user, auth...))
	if err != nil {
		return nil, nil, err
	}
	c, err := sftp.NewClient(conn, opts...)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c, conn, nil
}

// MustDial is Dial that fails the test on error.
func (s *Server) MustDial(t testing.TB, user string, auth []ssh.AuthMethod, opts ...sftp.ClientOption) *sftp.Client {
	t.Helper()
	c, _, err := s.Dial(t, user, auth, opts...)
	if err != nil {
		t.Fatalf("sftptest: dial %s: %v", user, err)
	}
	return c
}

// NewUser returns an enabled user with every permission, the given password (bcrypt at the
// minimum cost, to keep tests fast; "" = none) and public keys.
func NewUser(t testing.TB, name, password string, keys ...ssh.PublicKey) *users.User {
	t.Helper()
	u := &users.User{
		Name: name, Auth: users.AuthAny, PublicKeys: keys,
		Permissions: users.Permissions{List: true, Download: true, Upload: true, Overwrite: true, Delete: true, Rename: true, Mkdir: true},
	}
	if password != "" {
		h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		u.PasswordHash = string(h)
	}
	return u
}

// NewKey returns a fresh ed25519 key pair as an SSH signer.
func NewKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Auth is a minimal sftpd.Authenticator over a fixed set of users (no equal-time guarantees:
// that is package users' job).
type Auth struct {
	byName map[string]*users.User
}

// NewAuth returns an Auth for us.
func NewAuth(us ...*users.User) *Auth {
	a := &Auth{byName: map[string]*users.User{}}
	for _, u := range us {
		a.byName[u.Name] = u
	}
	return a
}

var errAuth = fmt.Errorf("sftptest: %w", users.ErrAuth)

// CheckPassword implements sftpd.Authenticator.
func (a *Auth) CheckPassword(_ context.Context, name, password string, _ netip.Addr) (*users.User, error) {
	u := a.byName[name]
	if u == nil || u.PasswordHash == "" || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return nil, errAuth
	}
	return u, nil
}

// CheckPublicKey implements sftpd.Authenticator.
func (a *Auth) CheckPublicKey(_ context.Context, name string, key ssh.PublicKey, _ netip.Addr) (*users.User, error) {
	u := a.byName[name]
	if u == nil {
		return nil, errAuth
	}
	for _, k := range u.PublicKeys {
		if subtle.ConstantTimeCompare(k.Marshal(), key.Marshal()) == 1 {
			return u, nil
		}
	}
	return nil, errAuth
}
