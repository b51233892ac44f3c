package ftpd

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygw/ferry/gateway/internal/defender"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

// hungUp reads c until the server closes it and returns how long that took from start, or
// fails after 10s.
func hungUp(t *testing.T, c net.Conn, start time.Time) time.Duration {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection still open after 10s")
	}
	return time.Since(start)
}

// The login timeout counts from the accept and nothing extends it: not NOOP, not a failed
// USER, not silence on an implicit-TLS connection that never completes its handshake. A client
// that logged in is not affected.
func TestLoginTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	e := startEnv(t, Config{LoginTimeout: timeout, TLS: TLSConfig{Mode: TLSOptional}})
	implicit, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.ServeImplicitTLS(implicit)

	t.Run("NOOP", func(t *testing.T) {
		start := time.Now()
		c := dialRaw(t, e.addr)
		replies := 0
		done := make(chan time.Duration)
		go func() { done <- hungUp(t, &readOnly{c.raw, c.tp}, start) }()
		for {
			if err := c.tp.PrintfLine("NOOP"); err != nil {
				break
			}
			replies++
			select {
			case d := <-done:
				if d < timeout-50*time.Millisecond || d > timeout+2*time.Second {
					t.Fatalf("closed after %v, want about %v", d, timeout)
				}
				if replies < 3 {
					t.Fatalf("only %d NOOPs sent", replies)
				}
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		if d := <-done; d > timeout+2*time.Second {
			t.Fatalf("closed after %v", d)
		}
	})
	t.Run("USER without PASS", func(t *testing.T) {
		start := time.Now()
		c := dialRaw(t, e.addr)
		c.expect(331, "USER %s", testUser)
		if d := hungUp(t, c.raw, start); d > timeout+2*time.Second {
			t.Fatalf("closed after %v", d)
		}
	})
	t.Run("implicit TLS, no handshake", func(t *testing.T) {
		start := time.Now()
		c, err := net.Dial("tcp", implicit.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if d := hungUp(t, c, start); d < timeout-50*time.Millisecond || d > timeout+2*time.Second {
			t.Fatalf("closed after %v, want about %v", d, timeout)
		}
	})
	t.Run("logged in", func(t *testing.T) {
		c := e.dial(true, testUser)
		time.Sleep(2 * timeout)
		if err := c.NoOp(); err != nil {
			t.Fatalf("logged-in session closed by the login timeout: %v", err)
		}
	})
}

// readOnly reads the raw connection through the textproto reader's buffer (replies to NOOP).
type readOnly struct {
	net.Conn
	r interface{ ReadLine() (string, error) }
}

func (r *readOnly) Read(p []byte) (int, error) {
	line, err := r.r.ReadLine()
	if err != nil {
		return 0, err
	}
	return copy(p, line+"\n"), nil
}

func newGate(t *testing.T, cfg defender.Config) (*defender.Defender, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	d, err := defender.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, reg
}

func withGate(d *defender.Defender) func(*Deps) {
	return func(deps *Deps) {
		deps.Gate = d
		deps.Auth = d.Auth(deps.Auth, "ftp")
	}
}

// The gate decides at accept: beyond the address's limit a connection gets 421 and is closed;
// a banned address is closed without a word; a ban closes the address's connections that have
// not logged in, not the logged-in ones.
func TestGate(t *testing.T) {
	d, _ := newGate(t, defender.Config{MaxUnauthenticatedPerIP: 2, Threshold: 4, LoginFailedScore: 4})
	mem := memstore.New()
	e := startEnvServe(t, Config{}, mem, mem, false, withGate(d))
	logged := e.dial(true, testUser)
	p1 := dialRaw(t, e.addr)
	dialRaw(t, e.addr)
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := newRawClient(t, raw)
	if code, msg := c.read(); code != 421 || !strings.Contains(msg, "Too many connections") {
		t.Fatalf("third connection not logged in: %d %s", code, msg)
	}
	// A wrong password bans: the address's pending connections close.
	p1.authTLS()
	p1.send("USER %s", testUser)
	p1.read()
	// 530, or nothing: the ban closes this connection too, as it has not logged in.
	if code, msg := p1.cmd("PASS wrong"); code != 530 && code != 0 {
		t.Fatalf("wrong password: %d %s", code, msg)
	}
	if !d.Banned(netip.MustParseAddr("127.0.0.1")) {
		t.Fatal("not banned")
	}
	raw, err = net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _ := raw.Read(make([]byte, 64)); n != 0 {
		t.Fatal("banned address got a reply")
	}
	if err := logged.NoOp(); err != nil {
		t.Fatalf("logged-in session after the ban: %v", err)
	}
}

// Behind a load balancer the gate judges the client's address from the PROXY header, and data
// connections are not counted as connections waiting to log in.
func TestGateBehindLoadBalancer(t *testing.T) {
	d, _ := newGate(t, defender.Config{MaxPerIP: 1, Threshold: 4, LoginFailedScore: 4})
	mem := memstore.New()
	e := startEnvServe(t, Config{PassivePorts: PortRange{Start: 30010, End: 30012}, PassiveHandoff: true}, mem, mem, true, withGate(d))
	a, err := ftp.Dial("203.0.113.1:21", ftp.DialWithTimeout(5*time.Second), ftp.DialWithDialFunc(e.lbDialer("198.51.100.1", true, false)),
		ftp.DialWithExplicitTLS(clientTLS()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Quit()
	if err := a.Login(testUser, testPass); err != nil {
		t.Fatal(err)
	}
	// 198.51.100.1 holds its one connection; its data connection still works...
	if err := a.Stor("/via-lb.bin", bytes.NewReader([]byte("data"))); err != nil {
		t.Fatalf("transfer at the address's limit: %v", err)
	}
	// ...its second control connection is refused...
	second := e.lbRaw421(t, "198.51.100.1")
	if !second {
		t.Fatal("second connection from 198.51.100.1 admitted")
	}
	// ...and 198.51.100.2, behind the same load balancer address, logs in.
	b, err := ftp.Dial("203.0.113.1:21", ftp.DialWithTimeout(5*time.Second), ftp.DialWithDialFunc(e.lbDialer("198.51.100.2", true, false)),
		ftp.DialWithExplicitTLS(clientTLS()))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Login(testUser, testPass); err != nil {
		t.Fatalf("another client behind the load balancer: %v", err)
	}
	// A ban is the header's address's too.
	b.Quit()
	var c *ftp.ServerConn
	testtool.Eventually(t, 5*time.Second, "198.51.100.2's connection to end", func() bool {
		c, err = ftp.Dial("203.0.113.1:21", ftp.DialWithTimeout(5*time.Second), ftp.DialWithDialFunc(e.lbDialer("198.51.100.2", true, false)),
			ftp.DialWithExplicitTLS(clientTLS()))
		return err == nil
	})
	defer c.Quit()
	if err := c.Login(testUser, "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if !d.Banned(netip.MustParseAddr("198.51.100.2")) || d.Banned(netip.MustParseAddr("127.0.0.1")) || d.Banned(netip.MustParseAddr("198.51.100.1")) {
		t.Fatal("the ban is not on the client's address")
	}
}

// lbRaw421 reports whether a control connection from clientIP through the load balancer is
// refused with 421.
func (e *env) lbRaw421(t *testing.T, clientIP string) bool {
	t.Helper()
	raw, err := e.lbDialer(clientIP, false, false)("tcp", "203.0.113.1:21")
	if err != nil {
		t.Fatal(err)
	}
	c := newRawClient(t, raw)
	code, _ := c.read()
	return code == 421
}

type fakeSessions struct {
	mu      sync.Mutex
	joined  []string
	revokes []func(string)
	left    int
}

func (f *fakeSessions) Join(u *users.User, protocol string, remote netip.Addr, revoke func(string)) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joined = append(f.joined, u.Name+"/"+protocol+"/"+remote.String())
	f.revokes = append(f.revokes, revoke)
	return func() { f.mu.Lock(); f.left++; f.mu.Unlock() }
}

// A revoked session's control connection is closed at once, and the session leaves.
func TestSessionRevoked(t *testing.T) {
	s := &fakeSessions{}
	mem := memstore.New()
	e := startEnvServe(t, Config{}, mem, mem, false, func(d *Deps) { d.Sessions = s })
	c := e.dial(true, testUser)
	s.mu.Lock()
	if len(s.joined) != 1 || s.joined[0] != "alice/ftps/127.0.0.1" {
		t.Fatalf("joined %q", s.joined)
	}
	revoke := s.revokes[0]
	s.mu.Unlock()
	revoke("user disabled")
	testtool.Eventually(t, 5*time.Second, "the session to end", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.left == 1 })
	if err := c.NoOp(); err == nil {
		t.Fatal("revoked session still answers")
	}
}
