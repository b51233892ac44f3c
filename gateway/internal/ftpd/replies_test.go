package ftpd

import (
	"crypto/tls"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// leak matches what a reply must never show a client: socket addresses, Go's network error
// wording, and the S3 SDK's request details.
var leak = regexp.MustCompile(`(?i)\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d+|\[[0-9a-f:]*\]:\d+|\btcp\b|\bdial\b|` +
	`operation error|api error|statuscode|requestid|https?://|exceeded maximum|s3store|PutObject|GetObject|HeadObject|ListObjects|goroutine`)

// CheckReply fails the test when a reply shows internals.
func checkReply(t *testing.T, what string, code int, msg string) {
	t.Helper()
	if m := leak.FindString(msg); m != "" {
		t.Errorf("%s: reply %d %q shows %q", what, code, msg, m)
	}
}

// cut resets a TCP connection (RST), as a killed client or a broken network does.
func cut(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// Data connections that break (a client killed mid-upload or mid-download, a TLS data channel
// cut without close_notify, a PASV nobody connects to) end with a reply that says what
// happened in plain words: no socket address, no Go network error text.
func TestRepliesShowNoSocketAddresses(t *testing.T) {
	e := startEnv(t, Config{TLS: TLSConfig{Mode: TLSOptional}, DataConnectTimeout: time.Second})
	big := make([]byte, 8<<20)
	if err := e.mem.WriteFile("/big.bin", big); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	tests := []struct {
		name string
		tls  bool
		run  func(t *testing.T, c *rawClient) (int, string)
	}{
		{"upload cut", false, func(t *testing.T, c *rawClient) (int, string) {
			raw, data := c.openData(false)
			c.send("STOR cut.bin")
			if code, msg := c.read(); code != 150 {
				t.Fatalf("STOR: %d %s", code, msg)
			}
			data.Write(chunk)
			cut(raw)
			return c.read()
		}},
		{"TLS upload cut", true, func(t *testing.T, c *rawClient) (int, string) {
			raw, data := c.openData(true)
			c.send("STOR cut-tls.bin")
			if code, msg := c.read(); code != 150 {
				t.Fatalf("STOR: %d %s", code, msg)
			}
			data.(*tls.Conn).Write(chunk)
			cut(raw)
			return c.read()
		}},
		{"download cut", false, func(t *testing.T, c *rawClient) (int, string) {
			raw, data := c.openData(false)
			c.send("RETR big.bin")
			if code, msg := c.read(); code != 150 {
				t.Fatalf("RETR: %d %s", code, msg)
			}
			io.ReadFull(data, chunk)
			cut(raw)
			return c.read()
		}},
		{"TLS download cut", true, func(t *testing.T, c *rawClient) (int, string) {
			raw, data := c.openData(true)
			c.send("RETR big.bin")
			if code, msg := c.read(); code != 150 {
				t.Fatalf("RETR: %d %s", code, msg)
			}
			io.ReadFull(data, chunk)
			cut(raw)
			return c.read()
		}},
		{"no data connection", false, func(t *testing.T, c *rawClient) (int, string) {
			c.expect(229, "EPSV")
			c.send("LIST")
			return c.read()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, e.addr)
			if tt.tls {
				c.authTLS()
			}
			c.login(testUser, testPass)
			code, msg := tt.run(t, c)
			if code < 400 {
				t.Fatalf("reply %d %q, want a failure", code, msg)
			}
			t.Logf("reply %d %s", code, msg)
			checkReply(t, tt.name, code, msg)
			// The session goes on.
			if code, msg := c.cmd("NOOP"); code != 200 {
				t.Errorf("NOOP after the failure: %d %s", code, msg)
			}
		})
	}
	if t.Failed() && !strings.Contains(e.logs.String(), "127.0.0.1") {
		t.Log("the log should still hold the detail")
	}
}
