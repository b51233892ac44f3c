package bench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/hostkeys"
	"github.com/ferrygw/ferry/gateway/internal/sftpd"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// memoryServer is the gateway's own SSH/SFTP stack (package sftpd) serving from memory: the
// protocol's ceiling in our process, the baseline for downloads.
type memoryServer struct {
	addr    string
	keyFile string
}

func startMemoryServer(b testing.TB, src string) *memoryServer {
	dir := b.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	if out, err := execCommand("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyFile); err != nil {
		b.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pubLine, err := os.ReadFile(keyFile + ".pub")
	if err != nil {
		b.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubLine)
	if err != nil {
		b.Fatal(err)
	}
	fsys := memstore.New()
	ctx := context.Background()
	up, err := fsys.Create(ctx, "/big.bin", storage.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(up, f); err != nil {
		b.Fatal(err)
	}
	f.Close()
	if err := up.Close(); err != nil {
		b.Fatal(err)
	}
	keys, err := hostkeys.Load(hostkeys.Config{Paths: []string{filepath.Join(dir, "host_ed25519")}, Generate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	u := &users.User{Name: "bench", PublicKeys: []ssh.PublicKey{pub}, Auth: users.AuthAny,
		Permissions: users.Permissions{List: true, Download: true}}
	srv, err := sftpd.New(sftpd.Config{HostKeys: keys}, sftpd.Deps{
		Auth:    keyAuth{u},
		Storage: func(*users.User) (storage.FS, error) { return fsys, nil },
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &memoryServer{addr: l.Addr().String(), keyFile: keyFile}
}

// keyAuth accepts one user's key.
type keyAuth struct{ u *users.User }

var errAuth = errors.New("authentication failed")

func (a keyAuth) CheckPassword(context.Context, string, string, netip.Addr) (*users.User, error) {
	return nil, errAuth
}

func (a keyAuth) CheckPublicKey(_ context.Context, name string, key ssh.PublicKey, _ netip.Addr) (*users.User, error) {
	if name == a.u.Name && bytes.Equal(key.Marshal(), a.u.PublicKeys[0].Marshal()) {
		return a.u, nil
	}
	return nil, errAuth
}
