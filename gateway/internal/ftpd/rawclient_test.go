package ftpd

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/textproto"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// rawClient speaks FTP by hand, for what a client library hides: exact reply codes, ABOR, data
// connections closed in particular ways.
type rawClient struct {
	t    *testing.T
	raw  net.Conn
	conn net.Conn // raw, or TLS over raw after AUTH TLS
	tp   *textproto.Conn
	tls  *tls.Config
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := newRawClient(t, raw)
	if code, msg := c.read(); code != 220 {
		t.Fatalf("greeting %d %s", code, msg)
	}
	return c
}

// newRawClient speaks over raw, which is closed when the test ends.
func newRawClient(t *testing.T, raw net.Conn) *rawClient {
	c := &rawClient{t: t, raw: raw, conn: raw, tp: textproto.NewConn(raw), tls: clientTLS()}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

func (c *rawClient) read() (int, string) {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		if _, ok := err.(*textproto.Error); !ok {
			return 0, err.Error()
		}
	}
	return code, msg
}

func (c *rawClient) send(format string, args ...any) {
	c.t.Helper()
	if err := c.tp.PrintfLine(format, args...); err != nil {
		c.t.Fatalf("send %q: %v", fmt.Sprintf(format, args...), err)
	}
}

func (c *rawClient) cmd(format string, args ...any) (int, string) {
	c.t.Helper()
	c.send(format, args...)
	return c.read()
}

// expect sends a command and fails unless the reply code is want.
func (c *rawClient) expect(want int, format string, args ...any) string {
	c.t.Helper()
	code, msg := c.cmd(format, args...)
	if code != want {
		c.t.Fatalf("%s: got %d %s, want %d", fmt.Sprintf(format, args...), code, msg, want)
	}
	return msg
}

func (c *rawClient) authTLS() {
	c.t.Helper()
	c.expect(234, "AUTH TLS")
	tc := tls.Client(c.raw, c.tls)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("control TLS handshake: %v", err)
	}
	c.conn = tc
	c.tp = textproto.NewConn(tc)
}

// login authenticates; with TLS on the control connection it also asks for protected data.
func (c *rawClient) login(user, pass string) {
	c.t.Helper()
	c.expect(331, "USER %s", user)
	c.expect(230, "PASS %s", pass)
	c.expect(200, "TYPE I")
	if _, ok := c.conn.(*tls.Conn); ok {
		c.expect(200, "PBSZ 0")
		c.expect(200, "PROT P")
	}
}

var epsvRe = regexp.MustCompile(`\(\|\|\|(\d+)\|\)`)

// openData sends EPSV and connects; with tlsOn the handshake runs before it returns.
func (c *rawClient) openData(tlsOn bool) (raw net.Conn, data net.Conn) {
	c.t.Helper()
	msg := c.expect(229, "EPSV")
	m := epsvRe.FindStringSubmatch(msg)
	if m == nil {
		c.t.Fatalf("bad EPSV reply %q", msg)
	}
	port, _ := strconv.Atoi(m[1])
	host, _, _ := net.SplitHostPort(c.raw.RemoteAddr().String())
	raw, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { raw.Close() })
	if !tlsOn {
		return raw, raw
	}
	tc := tls.Client(raw, c.tls)
	// The server handshakes when the transfer starts: run ours concurrently with the command.
	return raw, tc
}

func (c *rawClient) close() { c.raw.Close() }
