package sftpd_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/sftpd"
	"github.com/ferrygw/ferry/gateway/internal/sftpd/sftptest"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

func TestLogin(t *testing.T) {
	var disabled, both, fenced *users.User
	var otherKey ssh.Signer
	e := newEnv(t, func(o *envOpts) {
		disabled = sftptest.NewUser(t, "mallory", testPassword)
		disabled.Disabled = true
		both = sftptest.NewUser(t, "bob", testPassword)
		both.Auth = users.AuthBoth
		fenced = sftptest.NewUser(t, "carol", testPassword)
		fenced.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
		o.Users = append(o.Users, disabled, both, fenced)
	})
	otherKey = sftptest.NewKey(t)
	both.PublicKeys = []ssh.PublicKey{e.key.PublicKey()}

	tests := []struct {
		name string
		user string
		auth []ssh.AuthMethod
		ok   bool
	}{
		{"password", "alice", e.password(), true},
		{"key", "alice", e.pubkey(), true},
		{"wrong password", "alice", []ssh.AuthMethod{ssh.Password("nope")}, false},
		{"wrong key", "alice", []ssh.AuthMethod{ssh.PublicKeys(otherKey)}, false},
		{"unknown user", "nobody", e.password(), false},
		{"disabled user", "mallory", e.password(), false},
		{"address not allowed", "carol", e.password(), false},
		{"both: key and password", "bob", []ssh.AuthMethod{ssh.PublicKeys(e.key), ssh.Password(testPassword)}, true},
		{"both: key only", "bob", e.pubkey(), false},
		{"both: password only", "bob", e.password(), false},
		{"both: key and wrong password", "bob", []ssh.AuthMethod{ssh.PublicKeys(e.key), ssh.Password("nope")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := e.srv.Dial(t, tt.user, tt.auth)
			if tt.ok != (err == nil) {
				t.Fatalf("login error = %v, want ok=%v", err, tt.ok)
			}
			if err == nil {
				if _, err := c.Getwd(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	logs := e.srv.Logs.String()
	if strings.Contains(logs, testPassword) {
		t.Fatal("a password reached the log")
	}
	for _, reason := range []string{"user disabled", "address not allowed", "key required before password"} {
		if !strings.Contains(logs, reason) {
			t.Errorf("log lacks refusal reason %q", reason)
		}
	}
}

// Only the SFTP subsystem is served: no shell, no commands, no port forwarding.
func TestOnlySFTPServed(t *testing.T) {
	e := newEnv(t)
	conn, err := ssh.Dial("tcp", e.srv.Addr, e.srv.ClientConfig("alice", e.pubkey()...))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sess, err := conn.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Run("cat /etc/passwd"); err == nil {
		t.Fatal("exec succeeded")
	}
	sess, err = conn.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err == nil {
		t.Fatal("shell succeeded")
	}
	if err := sess.RequestSubsystem("sftp-other"); err == nil {
		t.Fatal("unknown subsystem accepted")
	}
	if _, err := conn.Dial("tcp", e.srv.Addr); err == nil {
		t.Fatal("port forwarding succeeded")
	}
}

func TestBanner(t *testing.T) {
	e := newEnv(t, func(o *envOpts) { o.Config.Banner = "Authorised use only\n" })
	var got string
	cfg := e.srv.ClientConfig("alice", e.pubkey()...)
	cfg.BannerCallback = func(msg string) error { got = msg; return nil }
	conn, err := ssh.Dial("tcp", e.srv.Addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if got != "Authorised use only\n" {
		t.Fatalf("banner = %q", got)
	}
}

// The login timeout bounds every connection that does not log in, whatever it sends: nothing,
// a byte at a time, or a key exchange followed by a login that never ends.
func TestLoginTimeout(t *testing.T) {
	e := newEnv(t, func(o *envOpts) { o.Config.LoginTimeout = 300 * time.Millisecond })
	unblock := make(chan struct{})
	defer close(unblock)
	tests := []struct {
		name  string
		drive func(c net.Conn) // reads c until the server hangs up
	}{
		{"silent", func(c net.Conn) { io.Copy(io.Discard, c) }},
		{"trickle", func(c net.Conn) {
			// A version line and the length of a 256-byte packet, then a byte every 50ms: each
			// read makes progress, none completes the handshake.
			go func() {
				io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n\x00\x00\x01\x00")
				for {
					if _, err := c.Write([]byte{1}); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			io.Copy(io.Discard, c)
		}},
		{"stalled login", func(c net.Conn) {
			// The key exchange completes; the client then never answers the password prompt
			// (the SSH client keeps reading the connection meanwhile).
			stall := ssh.PasswordCallback(func() (string, error) { <-unblock; return "", errors.New("gave up") })
			go ssh.NewClientConn(c, e.srv.Addr, e.srv.ClientConfig("alice", stall)) //nolint:errcheck
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", e.srv.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			c := &endConn{Conn: nc, ended: make(chan struct{})}
			start := time.Now()
			go tt.drive(c)
			select {
			case <-c.ended:
			case <-time.After(10 * time.Second):
				t.Fatal("connection still open after 10s")
			}
			if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
				t.Fatalf("connection ended after %v (%v), want about 300ms", d, c.err)
			}
			if isTimeout(c.err) {
				t.Fatalf("the client's own deadline ended it: %v", c.err)
			}
		})
	}
}

// endConn closes ended when a read fails: the server hung up.
type endConn struct {
	net.Conn
	once  sync.Once
	ended chan struct{}
	err   error
}

func (c *endConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(func() { c.err = err; close(c.ended) })
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, func(o *envOpts) { o.Config.IdleTimeout = 300 * time.Millisecond })
	c, conn, err := e.srv.Dial(t, "alice", e.pubkey())
	if err != nil {
		t.Fatal(err)
	}
	// Traffic keeps it alive past the timeout...
	for i := 0; i < 6; i++ {
		if _, err := c.Getwd(); err != nil {
			t.Fatalf("request %d while active: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// ...silence ends it.
	done := make(chan error, 1)
	go func() { done <- conn.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("idle connection not closed")
	}
	if _, err := c.Getwd(); err == nil {
		t.Fatal("request after idle close succeeded")
	}
}

func TestMaxSessions(t *testing.T) {
	e := newEnv(t, func(o *envOpts) { o.Config.MaxSessions = 1 })
	_, conn1, err := e.srv.Dial(t, "alice", e.pubkey())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.srv.Dial(t, "alice", e.pubkey()); err == nil {
		t.Fatal("second session accepted with max_sessions 1")
	}
	conn1.Close()
	// The slot frees when the first session ends.
	testtool.Eventually(t, 5*time.Second, "a free session slot", func() bool {
		_, conn, err := e.srv.Dial(t, "alice", e.pubkey())
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	if !strings.Contains(e.srv.Logs.String(), "too many sessions") {
		t.Fatal("refusal not logged")
	}
}

func TestNewValidates(t *testing.T) {
	key := sftptest.NewKey(t)
	ok := sftpd.Deps{Auth: sftptest.NewAuth(), Storage: nil}
	if _, err := sftpd.New(sftpd.Config{}, ok); err == nil {
		t.Fatal("no host keys, no storage accepted")
	}
	if _, err := sftpd.New(sftpd.Config{HostKeys: []ssh.Signer{key}, WriteWindow: 1024}, ok); err == nil {
		t.Fatal("tiny window accepted")
	}
}

// Shutdown lets a running upload finish, closes idle sessions at once, and Serve then returns
// ErrServerClosed.
func TestShutdownDrains(t *testing.T) {
	mem := memstore.New()
	key := sftptest.NewKey(t)
	alice := sftptest.NewUser(t, "alice", "", key.PublicKey())
	srv, err := sftpd.New(sftpd.Config{HostKeys: []ssh.Signer{sftptest.NewKey(t)}},
		sftpd.Deps{Auth: sftptest.NewAuth(alice), Storage: func(*users.User) (storage.FS, error) { return mem, nil }})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	cfg := &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()}
	dial := func() (*sftp.Client, *ssh.Client) {
		conn, err := ssh.Dial("tcp", l.Addr().String(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		c, err := sftp.NewClient(conn)
		if err != nil {
			t.Fatal(err)
		}
		return c, conn
	}
	busy, busyConn := dial()
	defer busyConn.Close()
	idle, idleConn := dial()
	defer idleConn.Close()
	f, err := busy.Create("/draining")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("first half "))

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	// The idle session is closed promptly.
	idleDone := make(chan error, 1)
	go func() { idleDone <- idleConn.Wait() }()
	select {
	case <-idleDone:
	case <-time.After(5 * time.Second):
		t.Fatal("idle session not closed by Shutdown")
	}
	_ = idle
	// New connections are refused.
	if _, err := ssh.Dial("tcp", l.Addr().String(), cfg); err == nil {
		t.Fatal("connection accepted during shutdown")
	}
	// The busy one finishes its upload.
	time.Sleep(50 * time.Millisecond)
	if _, err := f.Write([]byte("second half")); err != nil {
		t.Fatalf("write during shutdown: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close during shutdown: %v", err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not return after the transfer finished")
	}
	if got, _ := mem.ReadFile("/draining"); string(got) != "first half second half" {
		t.Fatalf("drained upload stored %q", got)
	}
	if err := <-served; !errors.Is(err, sftpd.ErrServerClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve = %v", err)
	}
}

// When the grace period ends first, open uploads are aborted and Shutdown reports it.
func TestShutdownDeadlineAborts(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	f, err := c.Create("/stuck")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("never finished"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.srv.SFTP.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown = %v, want deadline exceeded", err)
	}
	if e.mem.Pending() != 0 || len(e.mem.Files()) != 0 {
		t.Fatalf("pending %d files %v", e.mem.Pending(), e.mem.Files())
	}
}

// Many sessions upload at once; each gets its own object (no cross-talk between handles).
func TestConcurrentSessions(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := e.srv.Dial(t, "alice", e.pubkey(), sftp.UseConcurrentWrites(true))
			if err != nil {
				errs <- err
				return
			}
			data := randomBytes(uint64(100+i), 1<<20+i)
			name := "/s" + string(rune('a'+i))
			if err := upload(t, c, name, data); err != nil {
				errs <- err
				return
			}
			if got, _ := e.mem.ReadFile(name); sha(got) != sha(data) {
				errs <- errors.New(name + ": content differs")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
