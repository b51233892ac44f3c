package proxyproto

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// listen starts a Listener on 127.0.0.1:0 and returns it with its log.
func listen(t *testing.T, cfg Config) (*Listener, *logbuf.Buffer) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	l := NewListener(raw, cfg)
	t.Cleanup(func() { l.Close() })
	return l, logs
}

// accept returns the next accepted connection, or fails after a few seconds.
func accept(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() { c, err := l.Accept(); ch <- result{c, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted within 5s")
		return nil
	}
}

// dial connects to l from source (a loopback address) and writes prelude.
func dial(t *testing.T, l net.Listener, source string, prelude []byte) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if len(prelude) > 0 {
		if _, err := c.Write(prelude); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// closedByServer reports whether the server closed c (within a few seconds).
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || err != nil && strings.Contains(err.Error(), "reset")
}

func TestListenerGivesTheClientsAddresses(t *testing.T) {
	l, _ := listen(t, Config{Trusted: loopback})
	h := Header{Src: netip.MustParseAddrPort("203.0.113.7:51234"), Dst: netip.MustParseAddrPort("198.51.100.1:30001")}
	for _, version := range []int{1, 2} {
		client := dial(t, l, "127.0.0.1", append(h.Format(version), "hello"...))
		server := accept(t, l)
		if got := server.RemoteAddr().String(); got != "203.0.113.7:51234" {
			t.Errorf("v%d RemoteAddr = %s", version, got)
		}
		if got := server.LocalAddr().String(); got != "198.51.100.1:30001" {
			t.Errorf("v%d LocalAddr = %s", version, got)
		}
		if _, ok := server.RemoteAddr().(*net.TCPAddr); !ok {
			t.Errorf("RemoteAddr is a %T, want *net.TCPAddr (servers type-assert it)", server.RemoteAddr())
		}
		// The bytes after the header reach the server; the socket underneath is the TCP one.
		buf := make([]byte, 5)
		if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "hello" {
			t.Errorf("read %q, %v", buf, err)
		}
		if _, ok := server.(*Conn).NetConn().(*net.TCPConn); !ok {
			t.Errorf("NetConn is a %T", server.(*Conn).NetConn())
		}
		if _, err := server.Write([]byte("back")); err != nil {
			t.Fatal(err)
		}
		io.ReadFull(client, buf[:4])
		if string(buf[:4]) != "back" {
			t.Errorf("client read %q", buf[:4])
		}
	}
	// LOCAL (the proxy's own health check): the real endpoints stand.
	client := dial(t, l, "127.0.0.1", Header{Local: true}.Format(2))
	server := accept(t, l)
	if server.RemoteAddr().String() != client.LocalAddr().String() || server.LocalAddr().String() != l.Addr().String() {
		t.Errorf("LOCAL: remote %s local %s", server.RemoteAddr(), server.LocalAddr())
	}
}

func TestListenerRefuses(t *testing.T) {
	h := Header{Src: netip.MustParseAddrPort("203.0.113.7:1"), Dst: netip.MustParseAddrPort("198.51.100.1:21")}
	cases := []struct {
		name    string
		trusted string
		prelude []byte
		log     string
	}{
		{"untrusted address", "127.0.0.2/32", h.Format(2), "not a trusted proxy address"},
		{"no header", "127.0.0.0/8", []byte("SSH-2.0-OpenSSH_9.2\r\n"), "no PROXY protocol header"},
		{"malformed header", "127.0.0.0/8", []byte("PROXY TCP4 1.2.3.4\r\n"), "malformed v1 header"},
		{"silent past the timeout", "127.0.0.0/8", nil, "i/o timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, logs := listen(t, Config{Trusted: []netip.Prefix{netip.MustParsePrefix(tc.trusted)}, HeaderTimeout: 200 * time.Millisecond})
			go l.Accept() //nolint:errcheck // nothing may come out of it; the listener is closed at cleanup
			c := dial(t, l, "127.0.0.1", tc.prelude)
			if !closedByServer(c) {
				t.Fatal("connection not closed by the server")
			}
			if !strings.Contains(logs.String(), tc.log) || !strings.Contains(logs.String(), "connection refused") {
				t.Errorf("log %q lacks %q", logs.String(), tc.log)
			}
		})
	}
}

// A client that connects and says nothing holds no one else up.
func TestListenerSlowHeaderDoesNotBlockOthers(t *testing.T) {
	l, _ := listen(t, Config{Trusted: loopback, HeaderTimeout: 10 * time.Second})
	for range 20 {
		dial(t, l, "127.0.0.1", nil) // silent
	}
	dial(t, l, "127.0.0.1", Header{Src: netip.MustParseAddrPort("192.0.2.9:7"), Dst: netip.MustParseAddrPort("192.0.2.1:22")}.Format(2))
	start := time.Now()
	c := accept(t, l)
	if c.RemoteAddr().String() != "192.0.2.9:7" || time.Since(start) > 2*time.Second {
		t.Errorf("accepted %s after %s", c.RemoteAddr(), time.Since(start))
	}
}

// Optional mode (the health listener): plain HTTP from anyone is served as is, a header from a
// trusted proxy is honoured, a header from anyone else is refused.
func TestListenerOptionalHeader(t *testing.T) {
	l, _ := listen(t, Config{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, Optional: true, HeaderTimeout: time.Second})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.URL.Path+" from "+r.RemoteAddr)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	get := func(source string, prelude []byte) (string, error) {
		c := dial(t, l, source, append(prelude, "GET /readyz HTTP/1.0\r\n\r\n"...))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	src := netip.MustParseAddrPort("203.0.113.7:4242")
	hdr := Header{Src: src, Dst: netip.MustParseAddrPort("10.0.0.1:8080")}
	if got, err := get("127.0.0.1", nil); err != nil || !strings.HasPrefix(got, "GET /readyz from 127.0.0.1:") {
		t.Errorf("plain request: %q, %v", got, err)
	}
	if got, err := get("127.0.0.2", hdr.Format(2)); err != nil || got != "GET /readyz from 203.0.113.7:4242" {
		t.Errorf("trusted v2: %q, %v", got, err)
	}
	if got, err := get("127.0.0.2", Header{Local: true}.Format(2)); err != nil || !strings.HasPrefix(got, "GET /readyz from 127.0.0.2:") {
		t.Errorf("trusted LOCAL: %q, %v", got, err)
	}
	if got, err := get("127.0.0.2", hdr.Format(1)); err != nil || got != "GET /readyz from 203.0.113.7:4242" {
		t.Errorf("trusted v1: %q, %v", got, err)
	}
	if got, err := get("127.0.0.1", hdr.Format(2)); err == nil {
		t.Errorf("a header from an untrusted address was served: %q", got)
	}
}

func TestListenerClose(t *testing.T) {
	l, _ := listen(t, Config{Trusted: loopback})
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	l.Close()
	select {
	case err := <-errc:
		// net/http and ftpserverlib recognise a closed listener by this error.
		var op *net.OpError
		if !errors.Is(err, net.ErrClosed) || !errors.As(err, &op) {
			t.Errorf("Accept after Close = %v, want a *net.OpError wrapping net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Accept = %v", err)
	}
}
