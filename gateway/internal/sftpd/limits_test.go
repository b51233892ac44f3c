package sftpd_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// One connection may hold MaxUploads open uploads, counted across its channels; a further open
// is refused with a failure status, the session goes on, and a slot frees when an upload ends.
func TestUploadsPerConnectionLimit(t *testing.T) {
	e := newEnv(t, func(o *envOpts) { o.Config.MaxUploads = 3 })
	nc, err := net.Dial("tcp", e.srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cc, chans, reqs, err := ssh.NewClientConn(nc, e.srv.Addr, e.srv.ClientConfig("alice", e.pubkey()...))
	if err != nil {
		t.Fatal(err)
	}
	conn := ssh.NewClient(cc, chans, reqs)
	first, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	second, err := sftp.NewClient(conn) // a second SFTP channel on the same connection
	if err != nil {
		t.Fatal(err)
	}
	var open []*sftp.File
	for i, c := range []*sftp.Client{first, first, second} {
		f, err := c.Create(fmt.Sprintf("/f%d", i))
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		if _, err := f.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		open = append(open, f)
	}
	for _, c := range []*sftp.Client{first, second} {
		if _, err := c.Create("/one-too-many"); statusCode(err) != fxFailure {
			t.Fatalf("upload beyond the limit: %v, want a failure status", err)
		}
	}
	// The session still works: listings, and a new upload once one has ended.
	if _, err := first.ReadDir("/"); err != nil {
		t.Fatal(err)
	}
	if err := open[0].Close(); err != nil {
		t.Fatal(err)
	}
	if err := upload(t, second, "/after", []byte("later")); err != nil {
		t.Fatalf("upload after a slot freed: %v", err)
	}
	for _, f := range open[1:] {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if got, err := download(t, first, fmt.Sprintf("/f%d", i)); err != nil || !bytes.Equal(got, []byte{byte(i)}) {
			t.Fatalf("f%d: %q, %v", i, got, err)
		}
	}
	if _, err := first.Stat("/one-too-many"); err == nil {
		t.Fatal("a refused upload left a file")
	}
	// Another connection has its own allowance.
	other := e.client(t)
	for i := range 3 {
		f, err := other.Create(fmt.Sprintf("/g%d", i))
		if err != nil {
			t.Fatalf("other connection, upload %d: %v", i, err)
		}
		defer f.Close()
	}
}

// A connection may hold MaxChannels channels; more are rejected as a resource shortage while
// the open ones keep working, and closing one makes room.
func TestChannelsPerConnectionLimit(t *testing.T) {
	e := newEnv(t, func(o *envOpts) { o.Config.MaxChannels = 4 })
	nc, err := net.Dial("tcp", e.srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cc, chans, reqs, err := ssh.NewClientConn(nc, e.srv.Addr, e.srv.ClientConfig("alice", e.pubkey()...))
	if err != nil {
		t.Fatal(err)
	}
	conn := ssh.NewClient(cc, chans, reqs)
	var held []ssh.Channel
	for range 4 {
		ch, in, err := conn.OpenChannel("session", nil)
		if err != nil {
			t.Fatalf("channel within the limit: %v", err)
		}
		go ssh.DiscardRequests(in)
		held = append(held, ch)
	}
	for range 20 {
		_, _, err := conn.OpenChannel("session", nil)
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || oce.Reason != ssh.ResourceShortage {
			t.Fatalf("channel beyond the limit: %v, want a resource shortage", err)
		}
	}
	held[0].Close()
	testtool.Eventually(t, 5*time.Second, "a channel slot to free", func() bool {
		ch, in, err := conn.OpenChannel("session", nil)
		if err != nil {
			return false
		}
		go ssh.DiscardRequests(in)
		held[0] = ch
		return true
	})
	// The connection still serves SFTP on a channel of its own once there is room.
	held[1].Close()
	var c *sftp.Client
	testtool.Eventually(t, 5*time.Second, "an SFTP channel", func() bool {
		c, err = sftp.NewClient(conn)
		return err == nil
	})
	if err := upload(t, c, "/still-works", []byte("ok")); err != nil {
		t.Fatal(err)
	}
}
