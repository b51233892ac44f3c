package app_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/proxyproto"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

// idleConns are connections that never send a byte, read until the server closes them.
type idleConns struct {
	n      int
	closed atomic.Int64
	conns  []net.Conn
}

// holdIdle opens n connections from bind to addr and keeps them silent.
func holdIdle(t *testing.T, bind, addr string, n int) *idleConns {
	t.Helper()
	ic := &idleConns{n: n}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(bind)}, Timeout: 5 * time.Second}
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		ic.conns = append(ic.conns, c)
		go func() { io.Copy(io.Discard, c); ic.closed.Add(1) }()
	}
	t.Cleanup(func() {
		for _, c := range ic.conns {
			c.Close()
		}
	})
	return ic
}

func (ic *idleConns) open() int { return ic.n - int(ic.closed.Load()) }

// Logins blocked without credentials: while one address holds as many silent connections as
// it may (on both protocols, beyond the slots of max_sessions and max_clients that it tries to
// take), a real user from another address logs in within a second on both protocols.
func TestIdleConnectionsLeaveRoomForLogins(t *testing.T) {
	h := startHostile(t, gwOptions{sftp: "max_sessions: 32\n", ftp: "max_clients: 32\n",
		users: func(h *hostile) string { return "users:\n" + h.entry("alice", "") }})
	// The attack of the issue: 40 connections to each protocol, more than the 32 slots.
	sftpIdle := holdIdle(t, "127.0.0.1", h.sftpAddr, 40)
	ftpIdle := holdIdle(t, "127.0.0.1", h.ftpAddr, 40)
	time.Sleep(time.Second) // refused ones are closed at once; let them go
	heldSFTP, heldFTP := sftpIdle.open(), ftpIdle.open()
	t.Logf("the attacker holds %d SFTP and %d FTP silent connections", heldSFTP, heldFTP)

	out, took, ok := h.sftpOnce(t, userIP, "alice", byKey, "ls -a\n")
	t.Logf("OpenSSH sftp from %s: ok=%v in %v", userIP, ok, took.Round(time.Millisecond))
	if !ok || took > time.Second {
		t.Errorf("OpenSSH sftp from %s: ok=%v in %v:\n%s", userIP, ok, took, out)
	}
	out, code, took := h.curlLogin(t, userIP, "alice")
	t.Logf("curl FTP from %s: exit %d in %v", userIP, code, took.Round(time.Millisecond))
	if code != 0 || took > time.Second {
		t.Errorf("curl FTP from %s: exit %d in %v:\n%s", userIP, code, took, out)
	}
	// Meanwhile the attacker still held its connections: its limit, not fewer.
	if s, f := sftpIdle.open(), ftpIdle.open(); s+f != heldSFTP+heldFTP || s+f != 16 {
		t.Errorf("the attacker held %d+%d connections during the logins (%d+%d before), want its limit of 16", s, f, heldSFTP, heldFTP)
	}
}

// The login timeouts end every connection that does not log in, whatever it sends: silence or
// a trickle on SSH, NOOP after NOOP or a USER without PASS on FTP.
func TestLoginTimeoutsEndIdleConnections(t *testing.T) {
	const timeout = 2 * time.Second
	h := startHostile(t, gwOptions{sftp: "login_timeout: 2s\n", ftp: "login_timeout: 2s\n",
		users: func(h *hostile) string { return "users:\n" + h.entry("alice", "") }})
	dial := func(addr string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	tests := []struct {
		name string
		addr string
		talk func(c net.Conn, stop <-chan struct{})
	}{
		{"ssh silent", h.sftpAddr, func(net.Conn, <-chan struct{}) {}},
		{"ssh trickle", h.sftpAddr, func(c net.Conn, stop <-chan struct{}) {
			io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n\x00\x00\x01\x00")
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				if _, err := c.Write([]byte{1}); err != nil {
					return
				}
			}
		}},
		{"ftp NOOP", h.ftpAddr, func(c net.Conn, stop <-chan struct{}) {
			for {
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
				if _, err := io.WriteString(c, "NOOP\r\n"); err != nil {
					return
				}
			}
		}},
		{"ftp USER without PASS", h.ftpAddr, func(c net.Conn, stop <-chan struct{}) { io.WriteString(c, "USER alice\r\n") }},
	}
	var wg sync.WaitGroup
	for _, tt := range tests {
		wg.Go(func() {
			c := dial(tt.addr)
			stop := make(chan struct{})
			defer close(stop)
			start := time.Now()
			go tt.talk(c, stop)
			c.SetReadDeadline(time.Now().Add(15 * time.Second))
			n, err := io.Copy(io.Discard, c)
			took := time.Since(start)
			t.Logf("%s: closed by the server after %v (%d bytes of replies)", tt.name, took.Round(time.Millisecond), n)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("%s: still open after 15s", tt.name)
			} else if took < timeout-200*time.Millisecond || took > timeout+2*time.Second {
				t.Errorf("%s: closed after %v, want about %v", tt.name, took, timeout)
			}
		})
	}
	wg.Wait()
}

// attackResult counts what an attacker saw.
type attackResult struct {
	authFailed, refused atomic.Int64 // a password refused; a connection closed before one was asked
	firstRefusal        atomic.Int64 // unix nanoseconds of the first connection refused
}

func (r *attackResult) refusedNow() {
	r.refused.Add(1)
	r.firstRefusal.CompareAndSwap(0, time.Now().UnixNano())
}

// guessSSH makes one SSH login attempt as user with a wrong password from attackerIP.
func guessSSH(addr, user string, r *attackResult) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(attackerIP)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		r.refusedNow()
		return
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	_, _, _, err = ssh.NewClientConn(nc, addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password("guess")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey()}) //nolint:gosec // a test attacker
	switch {
	case err == nil:
		panic("a wrong password logged in")
	case strings.Contains(err.Error(), "unable to authenticate"):
		r.authFailed.Add(1)
	default:
		r.refusedNow()
	}
}

// guessFTP makes one FTP login attempt (explicit TLS) as user with a wrong password.
func guessFTP(addr, user string, r *attackResult) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(attackerIP)}, Timeout: 5 * time.Second}
	c, err := ftp.Dial(addr, ftp.DialWithDialer(d), ftp.DialWithTimeout(20*time.Second),
		ftp.DialWithExplicitTLS(&tls.Config{InsecureSkipVerify: true})) //nolint:gosec // a test attacker
	if err != nil {
		r.refusedNow()
		return
	}
	defer c.Quit()
	err = c.Login(user, "guess")
	var tpe *textproto.Error
	switch {
	case err == nil:
		panic("a wrong password logged in")
	case errors.As(err, &tpe) && tpe.Code == ftp.StatusNotLoggedIn:
		r.authFailed.Add(1)
	default:
		r.refusedNow()
	}
}

// No brute-force defence: an attacker loop from 127.0.0.3 guessing alice's password on both
// protocols at once is banned within its first few failures, while alice, from 127.0.0.2, logs
// in with her password over OpenSSH sftp and curl in under a second throughout.
func TestBruteForceIsBanned(t *testing.T) {
	const (
		attackFor = 8 * time.Second
		workers   = 8 // per protocol
		// 20 points to a ban, 4 per refused password (the defaults): the fifth failure bans.
		maxFailures = 5
	)
	h := startHostile(t, gwOptions{users: func(h *hostile) string { return "users:\n" + h.entry("alice", "") }})
	var sshR, ftpR attackResult
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 2 * workers {
		wg.Go(func() {
			// Bounded: at most 2,000 attempts per worker, and a pause after each refusal so that
			// the loop does not spend the machine's CPU on connects the server closes at once.
			for range 2000 {
				select {
				case <-stop:
					return
				default:
				}
				before := sshR.refused.Load() + ftpR.refused.Load()
				if i%2 == 0 {
					guessSSH(h.sftpAddr, "alice", &sshR)
				} else {
					guessFTP(h.ftpAddr, "alice", &ftpR)
				}
				if sshR.refused.Load()+ftpR.refused.Load() > before {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	// alice logs in, over and over, while the attack goes on.
	var logins []time.Duration
	for round := 0; time.Since(start) < attackFor; round++ {
		if round%2 == 0 {
			out, took, ok := h.sftpOnce(t, userIP, "alice", byPassword, "ls -a\n")
			logins = append(logins, took)
			if !ok {
				t.Errorf("alice's sftp login %d failed after %v:\n%s", round, took, out)
			}
		} else {
			out, code, took := h.curlLogin(t, userIP, "alice")
			logins = append(logins, took)
			if code != 0 {
				t.Errorf("alice's curl login %d: exit %d after %v:\n%s", round, code, took, out)
			}
		}
	}
	close(stop)
	wg.Wait()
	failures := sshR.authFailed.Load() + ftpR.authFailed.Load()
	slowest := slices.Max(logins)
	t.Logf("attack from %s for %v: %d passwords refused (SSH %d, FTP %d), %d connections refused (first after %v)",
		attackerIP, attackFor, failures, sshR.authFailed.Load(), ftpR.authFailed.Load(), sshR.refused.Load()+ftpR.refused.Load(),
		firstAfter(start, &sshR, &ftpR))
	t.Logf("alice from %s: %d logins, slowest %v, all %v", userIP, len(logins), slowest.Round(time.Millisecond), roundAll(logins))
	if slowest > time.Second {
		t.Errorf("alice's slowest login took %v, want under 1s", slowest)
	}
	// The server's own count of passwords it checked and refused from the attacker.
	scored := h.metric(t, "ferry_defender_score_total", `offence="login_failed"`) / 4
	if failures > maxFailures || scored > maxFailures || h.metric(t, "ferry_defender_bans_total") != 1 {
		t.Errorf("%d failures seen by the attacker, %d scored, %d bans: want the attacker banned within %d failures",
			failures, scored, h.metric(t, "ferry_defender_bans_total"), maxFailures)
	}
	// Banned on both protocols, even with the right password; alice goes on.
	if _, code, _ := h.curlLogin(t, attackerIP, "alice"); code == 0 {
		t.Error("the banned address logged in over FTP with the right password")
	}
	if _, _, ok := h.sftpOnce(t, attackerIP, "alice", byPassword, "ls\n"); ok {
		t.Error("the banned address logged in over SFTP with the right password")
	}
	if _, code, _ := h.curl(t, userIP, "alice", h.ftpURL("/")); code != 0 {
		t.Errorf("alice after the attack: exit %d", code)
	}
	// One Client Banned event, naming the address and the user it was guessing.
	var bans []event.Event[event.GatewayDetail]
	testtool.Eventually(t, 5*time.Second, "the Client Banned event", func() bool {
		bans = nil
		for _, e := range readGatewayEvents(t, h.dir) {
			if e.DetailType == event.DetailTypeClientBanned {
				bans = append(bans, e)
			}
		}
		return len(bans) > 0
	})
	if d := bans[0].Detail; len(bans) != 1 || d.ClientAddress != attackerIP || d.User != "alice" || d.Bans != 1 || d.Score < 20 ||
		d.BannedUntil.Sub(bans[0].Time) < 14*time.Minute || event.ValidateGateway(bans[0]) != nil {
		t.Errorf("ban events %+v", bans)
	}
}

func firstAfter(start time.Time, rs ...*attackResult) time.Duration {
	var first int64
	for _, r := range rs {
		if f := r.firstRefusal.Load(); f != 0 && (first == 0 || f < first) {
			first = f
		}
	}
	if first == 0 {
		return 0
	}
	return time.Unix(0, first).Sub(start).Round(time.Millisecond)
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// viaLoadBalancer dials addr as a PROXY-protocol load balancer forwards a client: from
// 127.0.0.1, with a v2 header saying that client, from a port of its own, dialed port.
func viaLoadBalancer(t *testing.T, addr, client string, port uint16) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	src := netip.AddrPortFrom(netip.MustParseAddr(client), uint16(c.LocalAddr().(*net.TCPAddr).Port))
	dst := netip.AddrPortFrom(netip.MustParseAddr("203.0.113.10"), port)
	if _, err := c.Write(proxyproto.Header{Version: 2, Src: src, Dst: dst}.Format(2)); err != nil {
		t.Fatal(err)
	}
	return c
}

// Behind a PROXY-protocol load balancer every connection comes from the load balancer's address;
// the limits and bans apply to the client's address from the header. An attacker guessing over
// SSH is banned, on FTP too, while another client behind the same load balancer logs in on both.
func TestDefenderJudgesTheClientBehindTheLoadBalancer(t *testing.T) {
	const attacker, client = "198.51.100.66", "198.51.100.7"
	h := startHostile(t, gwOptions{listen: "proxy_protocol:\n  trusted: [127.0.0.1]\n", passivePorts: "40000-40009",
		users: func(h *hostile) string { return "users:\n" + h.entry("alice", "") }})
	sshLogin := func(from, password string) error {
		c := viaLoadBalancer(t, h.sftpAddr, from, 22)
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		conn, _, _, err := ssh.NewClientConn(c, h.sftpAddr, &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{ssh.Password(password)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey()}) //nolint:gosec // test
		if err == nil {
			conn.Close()
		}
		return err
	}
	ftpLogin := func(from string) error {
		c, err := ftp.Dial("203.0.113.10:21", ftp.DialWithTimeout(10*time.Second), ftp.DialWithExplicitTLS(&tls.Config{InsecureSkipVerify: true}), //nolint:gosec // test
			ftp.DialWithDialFunc(func(string, string) (net.Conn, error) { return viaLoadBalancer(t, h.ftpAddr, from, 21), nil }))
		if err != nil {
			return err
		}
		defer c.Quit()
		return c.Login("alice", sharedPass)
	}
	for i := range 5 { // 4 points each: the fifth bans
		if err := sshLogin(attacker, "guess"); err == nil || !strings.Contains(err.Error(), "unable to authenticate") && i < 4 {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if err := sshLogin(attacker, sharedPass); err == nil {
		t.Error("the banned client logged in over SSH")
	}
	if err := ftpLogin(attacker); err == nil {
		t.Error("the banned client logged in over FTP")
	}
	if err := sshLogin(client, sharedPass); err != nil {
		t.Errorf("another client behind the load balancer, SSH: %v", err)
	}
	if err := ftpLogin(client); err != nil {
		t.Errorf("another client behind the load balancer, FTP: %v", err)
	}
	if n := h.metric(t, "ferry_defender_banned_addresses"); n != 1 {
		t.Errorf("%d addresses banned, want only the attacker's", n)
	}
	testtool.Eventually(t, 5*time.Second, "the Client Banned event", func() bool {
		for _, e := range readGatewayEvents(t, h.dir) {
			if e.DetailType == event.DetailTypeClientBanned {
				return e.Detail.ClientAddress == attacker
			}
		}
		return false
	})
}
