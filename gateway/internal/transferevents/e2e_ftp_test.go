package transferevents

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/ftpd"
	"github.com/ferrygw/ferry/gateway/internal/sftpd/sftptest"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/event"
)

// TestFTPEndToEnd checks that ftpd gives its uploads a session id shared by the connection's
// transfers (without one the events would be invalid and not sent), and that a refused FTP
// login is reported.
func TestFTPEndToEnd(t *testing.T) {
	rec := newRecorder(t)
	events := New(rec, Config{})
	mem := memstore.New()
	bob := sftptest.NewUser(t, "bob", "pw-bob")
	srv, err := ftpd.New(ftpd.Config{TLS: ftpd.TLSConfig{Mode: ftpd.TLSNone}}, ftpd.Deps{
		Auth: events.Auth(sftptest.NewAuth(bob), "ftp"),
		Storage: func(u *users.User) (storage.FS, error) {
			return events.Wrap(access.Restrict(mem, u.Permissions), "ftp"), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})

	dial := func() *ftp.ServerConn {
		c, err := ftp.Dial(l.Addr().String(), ftp.DialWithTimeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Quit() })
		return c
	}
	if err := dial().Login("bob", "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	ev := rec.waitN(t, 1)[0]
	if ev.DetailType != event.DetailTypeLoginFailed || ev.Detail.User != "bob" || ev.Detail.Protocol != "ftp" {
		t.Errorf("login event %+v", ev)
	}
	rec.mu.Lock()
	rec.ev = nil
	rec.mu.Unlock()

	c := dial()
	if err := c.Login("bob", "pw-bob"); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"a.txt": []byte("first\n"), "b.bin": randomBytes(t, 300<<10)}
	for _, name := range []string{"a.txt", "b.bin"} {
		if err := c.Stor(name, bytes.NewReader(files[name])); err != nil {
			t.Fatal(err)
		}
	}
	got := rec.waitN(t, 2)
	for _, ev := range got {
		d := ev.Detail
		if ev.DetailType != event.DetailTypeTransferCompleted || d.User != "bob" || d.Protocol != "ftp" ||
			d.SHA256 != sum(files[d.Key]) || d.Bytes != int64(len(files[d.Key])) {
			t.Errorf("event %+v", ev)
		}
	}
	if a, b := got[0].Detail.SessionID, got[1].Detail.SessionID; a == "" || a != b {
		t.Errorf("session ids %q and %q, want one non-empty id per connection", a, b)
	}
}
