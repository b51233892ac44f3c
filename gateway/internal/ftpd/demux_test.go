package ftpd

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ferrygw/ferry/gateway/internal/proxyproto"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

// What the load balancer's address and the exposed ports look like to the client. Nothing
// listens on them: lbDialer takes every connection to the replica's one listener.
const (
	lbHost      = "198.51.100.10"
	lbPassive   = "30000-30002"
	lbImplicit  = 990
	lbControl   = lbHost + ":21"
	lbImplicitA = lbHost + ":990"
)

func startDemux(t *testing.T) *env {
	t.Helper()
	mem := memstore.New()
	return startEnvServe(t, Config{PassivePorts: PortRange{Start: 30000, End: 30002}, PassiveHandoff: true,
		ImplicitTLSPort: lbImplicit}, mem, mem, true)
}

// lbDialer connects as a load balancer forwards: whatever address the client asks for, the
// connection reaches the replica's FTP listener and starts with a PROXY v2 header saying that
// clientIP dialed that address. jlaffaye/ftp leaves TLS to a custom dialer, except for explicit
// TLS on the control connection: tlsData wraps every connection after the first (the data
// connections), implicit wraps the first too.
func (e *env) lbDialer(clientIP string, tlsData, implicit bool) func(network, addr string) (net.Conn, error) {
	var mu sync.Mutex
	first := true
	return func(network, addr string) (net.Conn, error) {
		dst, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, fmt.Errorf("lbDialer: %s: %w", addr, err)
		}
		c, err := net.DialTimeout(network, e.addr, 5*time.Second)
		if err != nil {
			return nil, err
		}
		src := netip.AddrPortFrom(netip.MustParseAddr(clientIP), uint16(c.LocalAddr().(*net.TCPAddr).Port))
		if _, err := c.Write(proxyproto.Header{Src: src, Dst: dst}.Format(2)); err != nil {
			c.Close()
			return nil, err
		}
		mu.Lock()
		control := first
		first = false
		mu.Unlock()
		if control && implicit || !control && tlsData {
			return tls.Client(c, clientTLS()), nil
		}
		return c, nil
	}
}

// lbRaw is dialRaw through the load balancer.
func (e *env) lbRaw(t *testing.T, clientIP, addr string) *rawClient {
	t.Helper()
	raw, err := e.lbDialer(clientIP, false, false)("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := newRawClient(t, raw)
	if code, msg := c.read(); code != 220 {
		t.Fatalf("greeting %d %s", code, msg)
	}
	return c
}

// Passive transfers behind the load balancer, EPSV and PASV, more of them than the range has
// ports: the reply names a port of the range and the load balancer's address, the data
// connection for it is handed to the transfer, and ports are reused once a transfer is done.
func TestDemuxPassiveTransfers(t *testing.T) {
	e := startDemux(t)
	for _, epsv := range []bool{true, false} {
		c, err := ftp.Dial(lbControl, ftp.DialWithTimeout(10*time.Second), ftp.DialWithDialFunc(e.lbDialer("203.0.113.5", true, false)),
			ftp.DialWithExplicitTLS(clientTLS()), ftp.DialWithDisabledEPSV(!epsv))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(testUser, testPass); err != nil {
			t.Fatal(err)
		}
		// Under the PROXY header the control connection's TCP socket is still found: a killed
		// client is noticed from its state (see controlConn).
		e.srv.mu.Lock()
		for sess := range e.srv.sessions {
			if sess.ctl.tcp == nil {
				t.Error("the control connection's TCP socket is not found under its proxyproto.Conn")
			}
		}
		e.srv.mu.Unlock()
		for i := range 7 {
			name := fmt.Sprintf("/epsv-%v-%d.bin", epsv, i)
			data := randomData(t, 1000+i*70_000)
			if err := c.Stor(name, bytes.NewReader(data)); err != nil {
				t.Fatalf("epsv=%v STOR %d: %v", epsv, i, err)
			}
			r, err := c.Retr(name)
			if err != nil {
				t.Fatalf("epsv=%v RETR %d: %v", epsv, i, err)
			}
			if got := readAll(t, r); !bytes.Equal(got, data) {
				t.Fatalf("epsv=%v: %s read back %d bytes, differs", epsv, name, len(got))
			}
		}
		c.Quit()
	}
	// The session saw the client's address, not the load balancer's.
	if !strings.Contains(e.logs.String(), "remote=203.0.113.5:") {
		t.Errorf("log does not show the client's address:\n%s", e.logs.String())
	}
	r := e.lbRaw(t, "203.0.113.5", lbControl)
	r.authTLS()
	r.login(testUser, testPass)
	msg := r.expect(227, "PASV")
	if !strings.Contains(msg, "(198,51,100,10,117,") { // 30000-30002 = 117*256 + 48..50
		t.Errorf("PASV reply %q: want the address the client dialed and a port of %s", msg, lbPassive)
	}
}

func TestDemuxImplicitTLS(t *testing.T) {
	e := startDemux(t)
	c, err := ftp.Dial(lbImplicitA, ftp.DialWithTimeout(10*time.Second), ftp.DialWithDialFunc(e.lbDialer("203.0.113.6", true, true)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Login(testUser, testPass); err != nil {
		t.Fatal(err)
	}
	data := randomData(t, 300_000)
	if err := c.Stor("/implicit.bin", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.mem.ReadFile("/implicit.bin"); !bytes.Equal(got, data) {
		t.Fatal("implicit FTPS upload differs")
	}
	if opts, _ := e.mem.CreateOptions("/implicit.bin"); opts.Protocol != "ftps" {
		t.Errorf("protocol %q", opts.Protocol)
	}
}

// pasvPort sends EPSV and returns the port of the reply.
func (c *rawClient) pasvPort() int {
	c.t.Helper()
	m := epsvRe.FindStringSubmatch(c.expect(229, "EPSV"))
	port, _ := strconv.Atoi(m[1])
	return port
}

func TestDemuxRefusals(t *testing.T) {
	closedSoon := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !isTimeout(err)
	}

	t.Run("data connection for a port no PASV waits on", func(t *testing.T) {
		e := startDemux(t)
		d, err := e.lbDialer("203.0.113.5", false, false)("tcp", lbHost+":30001")
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if !closedSoon(d) {
			t.Error("not closed")
		}
		testtool.Eventually(t, 5*time.Second, "the refusal to be logged", func() bool {
			return strings.Contains(e.logs.String(), "data connection refused: no transfer waits on its port")
		})
	})

	t.Run("data connection from another client", func(t *testing.T) {
		e := startDemux(t)
		r := e.lbRaw(t, "203.0.113.5", lbControl)
		r.authTLS()
		r.login(testUser, testPass)
		port := r.pasvPort()
		d, err := e.lbDialer("203.0.113.66", false, false)("tcp", lbHost+":"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		go tls.Client(d, clientTLS()).Handshake() //nolint:errcheck // the server refuses before or after it
		if code, msg := r.cmd("LIST"); code != 425 {
			t.Errorf("LIST with another client's data connection = %d %s, want 425", code, msg)
		}
	})

	t.Run("every port taken, then freed", func(t *testing.T) {
		e := startDemux(t)
		var clients []*rawClient
		for range 3 { // the range has three ports: each client holds one
			r := e.lbRaw(t, "203.0.113.7", lbControl)
			r.authTLS()
			r.login(testUser, testPass)
			r.pasvPort()
			clients = append(clients, r)
		}
		r := e.lbRaw(t, "203.0.113.7", lbControl)
		r.authTLS()
		r.login(testUser, testPass)
		if code, msg := r.cmd("EPSV"); code != 425 || !strings.Contains(msg, "passive port") {
			t.Errorf("EPSV with every port taken = %d %s, want 425", code, msg)
		}
		if n := e.srv.PassivePortsExhausted(); n != 1 {
			t.Errorf("exhaustion counter = %d, want 1", n)
		}
		// Two clients leave. ftpserverlib opens a new PASV's listener before it closes the
		// previous one, so a client asking again needs a second port meanwhile.
		clients[0].cmd("QUIT")
		clients[1].cmd("QUIT")
		testtool.Eventually(t, 5*time.Second, "the departed clients' listeners to close", func() bool {
			e.srv.handoff.mu.Lock()
			defer e.srv.handoff.mu.Unlock()
			n := 0
			for _, hl := range e.srv.handoff.ports {
				if hl.closed() {
					n++
				}
			}
			return n == 2
		})
		// A client asking again and again (no transfer) frees its previous port each time.
		for range 10 {
			r.pasvPort()
		}
	})

	t.Run("direct connection to the listener behind", func(t *testing.T) {
		e := startDemux(t)
		r := e.lbRaw(t, "203.0.113.8", lbControl)
		r.authTLS()
		r.login(testUser, testPass)
		port := r.pasvPort()
		e.srv.handoff.mu.Lock()
		hl := e.srv.handoff.ports[port]
		e.srv.handoff.mu.Unlock()
		if hl == nil {
			t.Fatalf("no listener for port %d", port)
		}
		direct, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(hl.tcp.Addr().(*net.TCPAddr).Port))
		if err != nil {
			t.Fatal(err)
		}
		defer direct.Close()
		var wg sync.WaitGroup
		var listing []byte
		wg.Go(func() {
			// The legitimate one, once the server is waiting and the direct one was refused.
			testtool.Eventually(t, 10*time.Second, "the direct connection's refusal", func() bool { return closedSoon(direct) })
			d, err := e.lbDialer("203.0.113.8", false, false)("tcp", lbHost+":"+strconv.Itoa(port))
			if err != nil {
				t.Error(err)
				return
			}
			tc := tls.Client(d, clientTLS())
			listing, _ = io.ReadAll(tc)
			tc.Close()
		})
		r.send("LIST")
		if code, msg := r.read(); code != 150 {
			t.Fatalf("LIST = %d %s", code, msg)
		}
		wg.Wait()
		if code, msg := r.read(); code != 226 {
			t.Errorf("LIST end = %d %s", code, msg)
		}
		if !strings.Contains(e.logs.String(), "direct data connection refused") {
			t.Error("direct connection not logged as refused")
		}
		_ = listing
	})
}
