package transferevents

import (
	"net"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/sftpd/sftptest"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// TestSFTPEndToEnd uploads through the real SFTP server (pkg/sftp client over SSH) into a real
// S3 server, wired as the app wires it: events around the restricted home, the authenticator
// decorated.
func TestSFTPEndToEnd(t *testing.T) {
	s3 := s3test.Start(t)
	bucket := s3.NewBucket(t)
	store, err := s3store.New(s3.Client(), s3store.Config{Bucket: bucket, PartSize: 5 << 20, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t)
	events := New(rec, Config{})
	alice := sftptest.NewUser(t, "alice", "pw-alice")
	srv := sftptest.StartWith(t, sftptest.Options{
		Storage: func(u *users.User) (storage.FS, error) {
			return events.Wrap(access.Restrict(store.Home("", "incoming/"+u.Name), u.Permissions), "sftp"), nil
		},
		Auth: events.Auth(sftptest.NewAuth(alice), "sftp"),
	}, alice)
	login := []ssh.AuthMethod{ssh.Password("pw-alice")}

	t.Run("completed", func(t *testing.T) {
		c, conn, err := srv.Dial(t, "alice", login)
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{"/small.txt": []byte("hello\n"), "/big.bin": randomBytes(t, 11<<20+3)}
		for name, data := range files {
			f, err := c.Create(name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(data); err != nil { // pkg/sftp sends concurrent writes
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
		got := rec.waitN(t, 2)
		session := ""
		for _, ev := range got {
			d := ev.Detail
			data := files["/"+d.Key[len("incoming/alice/"):]]
			if ev.DetailType != event.DetailTypeTransferCompleted || data == nil {
				t.Fatalf("event %+v", ev)
			}
			if d.User != "alice" || d.Protocol != "sftp" || d.Bucket != bucket || d.Bytes != int64(len(data)) ||
				d.SHA256 != sum(data) || d.ClientAddress != conn.LocalAddr().String() || d.TransferID == "" {
				t.Errorf("detail %+v (client %s)", d, conn.LocalAddr())
			}
			if session == "" {
				session = d.SessionID
			} else if d.SessionID != session {
				t.Errorf("one connection, two session ids: %q, %q", session, d.SessionID)
			}
		}
		if session == "" {
			t.Error("no session id")
		}
		rec.mu.Lock()
		rec.ev = nil
		rec.mu.Unlock()
	})

	t.Run("killed mid-upload", func(t *testing.T) {
		nc, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		sc, chans, reqs, err := ssh.NewClientConn(nc, srv.Addr, srv.ClientConfig("alice", login...))
		if err != nil {
			t.Fatal(err)
		}
		c, err := sftp.NewClient(ssh.NewClient(sc, chans, reqs))
		if err != nil {
			t.Fatal(err)
		}
		f, err := c.Create("/killed.bin")
		if err != nil {
			t.Fatal(err)
		}
		chunk := randomBytes(t, 1<<20)
		for range 7 { // past the first 5 MiB part: a multipart upload is in progress
			if _, err := f.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		nc.Close() // the client dies: no close, no FIN of the SFTP handle
		ev := rec.waitN(t, 1)[0]
		d := ev.Detail
		if ev.DetailType != event.DetailTypeTransferFailed || d.User != "alice" || d.Key != "incoming/alice/killed.bin" ||
			d.SHA256 != "" || d.FailureReason == "" || d.Bytes > 7<<20 {
			t.Errorf("event %+v", ev)
		}
		// Nothing appears later either.
		time.Sleep(200 * time.Millisecond)
		if n := len(rec.events()); n != 1 {
			t.Errorf("%d events after the kill: %+v", n, rec.events())
		}
		if _, err := store.Home("", "incoming/alice").Stat(t.Context(), "/killed.bin"); err == nil {
			t.Error("killed upload is visible")
		}
		rec.mu.Lock()
		rec.ev = nil
		rec.mu.Unlock()
	})

	t.Run("login failed", func(t *testing.T) {
		if _, _, err := srv.Dial(t, "alice", []ssh.AuthMethod{ssh.Password("guess")}); err == nil {
			t.Fatal("wrong password accepted")
		}
		ev := rec.waitN(t, 1)[0]
		if ev.DetailType != event.DetailTypeLoginFailed || ev.Detail.User != "alice" || ev.Detail.ClientAddress != "127.0.0.1" {
			t.Errorf("event %+v", ev)
		}
	})
}
