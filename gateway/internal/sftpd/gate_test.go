package sftpd_test

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/defender"
	"github.com/ferrygw/ferry/gateway/internal/sftpd"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

// refusedAtAccept reports whether the server closed a new connection without a byte of SSH.
func refusedAtAccept(t *testing.T, addr string) bool {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	n, err := nc.Read(buf)
	return n == 0 && err != nil && !isTimeout(err)
}

// silent opens a connection that never says anything, closed at the end of the test.
func silent(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	// The server's version line: it was admitted.
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Read(make([]byte, 8)); err != nil {
		t.Fatalf("not admitted: %v", err)
	}
	return nc
}

// The gate decides at accept, before any SSH: connections beyond the address's limit of
// connections not logged in are closed at once; a login frees its slot; a ban closes the
// address's pending connections and refuses new ones.
func TestGate(t *testing.T) {
	reg := prometheus.NewRegistry()
	d, err := defender.New(defender.Config{MaxUnauthenticatedPerIP: 2, Threshold: 4, LoginFailedScore: 4, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *envOpts) {
		o.Gate = d
		o.WrapAuth = func(a sftpd.Authenticator) sftpd.Authenticator { return d.Auth(a, "sftp") }
	})
	pending := func(n float64) func() bool {
		return func() bool { return gauge(t, reg, "ferry_connections_unauthenticated") == n }
	}
	s1 := silent(t, e.srv.Addr)
	s2 := silent(t, e.srv.Addr)
	if !refusedAtAccept(t, e.srv.Addr) {
		t.Fatal("a third connection not logged in was admitted")
	}
	s1.Close()
	testtool.Eventually(t, 5*time.Second, "the closed connection's slot", pending(1))
	c := e.srv.MustDial(t, "alice", e.pubkey())
	if n := gauge(t, reg, "ferry_connections_unauthenticated"); n != 1 {
		t.Fatalf("%v connections not logged in after a login, want 1", n)
	}
	held := silent(t, e.srv.Addr) // the login freed its slot: room for this one
	s2.Close()
	testtool.Eventually(t, 5*time.Second, "the second closed connection's slot", pending(1))
	// Silent connections score nothing here (no_login 0); one wrong password (4) reaches the
	// threshold.
	if _, _, err := e.srv.Dial(t, "alice", []ssh.AuthMethod{ssh.Password("wrong")}); err == nil {
		t.Fatal("wrong password accepted")
	}
	if !d.Banned(netip.MustParseAddr("127.0.0.1")) {
		t.Fatal("not banned")
	}
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, held); err != nil {
		t.Fatalf("the pending connection was not closed by the ban: %v", err)
	}
	if !refusedAtAccept(t, e.srv.Addr) {
		t.Fatal("banned address admitted")
	}
	// The session that logged in before the ban goes on.
	if _, err := c.Getwd(); err != nil {
		t.Fatalf("logged-in session after the ban: %v", err)
	}
}

// gauge reads a gauge without labels from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// fakeSessions records joins and lets the test revoke them.
type fakeSessions struct {
	mu      sync.Mutex
	revokes []func(string)
	joined  []string
	left    int
}

func (f *fakeSessions) Join(u *users.User, protocol string, remote netip.Addr, revoke func(string)) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revokes = append(f.revokes, revoke)
	f.joined = append(f.joined, u.Name+"/"+protocol+"/"+remote.String())
	return func() { f.mu.Lock(); f.left++; f.mu.Unlock() }
}

var _ sftpd.Sessions = (*fakeSessions)(nil)

// A revoked session's connection is closed at once, and the session leaves.
func TestSessionRevoked(t *testing.T) {
	s := &fakeSessions{}
	e := newEnv(t, func(o *envOpts) { o.Sessions = s })
	c, conn, err := e.srv.Dial(t, "alice", e.pubkey())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Getwd(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	if len(s.joined) != 1 || s.joined[0] != "alice/sftp/127.0.0.1" {
		t.Fatalf("joined %q", s.joined)
	}
	revoke := s.revokes[0]
	s.mu.Unlock()
	start := time.Now()
	revoke("user disabled")
	done := make(chan error, 1)
	go func() { done <- conn.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after revocation")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %v", d)
	}
	testtool.Eventually(t, 5*time.Second, "the session to leave", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.left == 1 })
}
