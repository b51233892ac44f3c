package proxyproto

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultHeaderTimeout is how long a connection may take to send its header.
const DefaultHeaderTimeout = 5 * time.Second

// maxPendingHeaders bounds the connections whose header is being read at once: beyond it the
// listener stops accepting until one finishes, so a flood of silent connections costs bounded
// goroutines and memory.
const maxPendingHeaders = 512

// Config says whom a Listener believes.
type Config struct {
	// Trusted are the proxies' addresses. A connection from anywhere else is closed at once;
	// one from a trusted address must start with a header. With Optional, see there.
	Trusted []netip.Prefix
	// Optional accepts connections without a header too (their own addresses stand), and a
	// header only from a trusted address: for a plain-HTTP health endpoint that a load balancer
	// may check with or without a header.
	Optional bool
	// HeaderTimeout bounds the wait for the header (default DefaultHeaderTimeout).
	HeaderTimeout time.Duration
	// Logger receives one line per refused connection; nil discards.
	Logger *slog.Logger
}

// Listener wraps a listener whose connections come through PROXY-protocol proxies: Accept
// returns connections whose RemoteAddr is the client's address and LocalAddr the address the
// client dialed, as the header says. Headers are read off the accept path, each in its own
// goroutine under HeaderTimeout, so a slow or silent connection never delays another.
type Listener struct {
	net.Listener
	cfg Config
	log *slog.Logger

	start   sync.Once
	ready   chan net.Conn // connections whose header was read
	pending chan struct{} // one token per header being read
	done    chan struct{} // closed by Close

	closeOnce sync.Once
	failOnce  sync.Once
	failed    chan struct{} // closed when the accept loop stopped; err says why
	err       error
}

// NewListener returns l with PROXY-protocol headers read from every connection.
func NewListener(l net.Listener, cfg Config) *Listener {
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{
		Listener: l,
		cfg:      cfg,
		log:      log.With("component", "proxyproto", "listener", l.Addr().String()),
		ready:    make(chan net.Conn),
		pending:  make(chan struct{}, maxPendingHeaders),
		done:     make(chan struct{}),
		failed:   make(chan struct{}),
	}
}

// Accept returns the next connection whose header was accepted. After Close (or when the
// underlying listener fails) it returns the underlying listener's error: for a closed listener a
// *net.OpError wrapping net.ErrClosed, which servers (net/http, ftpserverlib) recognise.
func (l *Listener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.failed:
		return nil, l.err
	}
}

// Close stops accepting; connections whose header was still being read are closed.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *Listener) acceptLoop() {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			l.failOnce.Do(func() { l.err = err; close(l.failed) })
			return
		}
		delay = 0
		select {
		case l.pending <- struct{}{}:
		case <-l.done:
			c.Close()
			continue // the next Accept fails: the listener is closed
		}
		go l.handle(c)
	}
}

// isTemporary reports the accept errors a server should retry (a connection reset before it
// was accepted, running out of file descriptors).
func isTemporary(err error) bool {
	var ne interface{ Temporary() bool }
	return errors.As(err, &ne) && ne.Temporary()
}

func (l *Listener) handle(c net.Conn) {
	defer func() { <-l.pending }()
	conn, err := l.admit(c)
	if err != nil {
		l.log.Warn("connection refused", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	select {
	case l.ready <- conn:
	case <-l.done:
		conn.Close()
	}
}

// admit reads the header of c and returns the connection with the addresses it gives.
func (l *Listener) admit(c net.Conn) (net.Conn, error) {
	peer := IP(c.RemoteAddr())
	trusted := l.trusts(peer)
	if !trusted && !l.cfg.Optional {
		return nil, errors.New("not a trusted proxy address (listen.proxy_protocol.trusted)")
	}
	if err := c.SetReadDeadline(time.Now().Add(l.cfg.HeaderTimeout)); err != nil {
		return nil, err
	}
	h, consumed, err := readHeader(c)
	switch {
	case errors.Is(err, ErrNoHeader) && l.cfg.Optional:
		if err := c.SetReadDeadline(time.Time{}); err != nil {
			return nil, err
		}
		return &Conn{Conn: c, prefix: consumed}, nil
	case err != nil:
		return nil, err
	case !trusted:
		return nil, errors.New("PROXY header from an untrusted address")
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	conn := &Conn{Conn: c, header: h}
	if !h.Local {
		conn.remote = net.TCPAddrFromAddrPort(h.Src)
		conn.local = net.TCPAddrFromAddrPort(h.Dst)
	}
	return conn, nil
}

func (l *Listener) trusts(a netip.Addr) bool {
	for _, p := range l.cfg.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// IP is the IP address of a (an IPv4-mapped address as IPv4), or the zero Addr when a has none.
// A connection accepted through a Listener has the client's as its RemoteAddr, so this is the
// address the gateway judges a client by (limits, bans, sessions), with or without a proxy.
func IP(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Conn is a connection accepted through a proxy: RemoteAddr and LocalAddr are the client's and
// the address it dialed (the connection's own when the header carried none).
type Conn struct {
	net.Conn
	header        Header
	local, remote net.Addr // nil: the connection's own
	prefix        []byte   // bytes read looking for an optional header, served first
}

// Header returns the PROXY header the connection started with (the zero Header when it had none).
func (c *Conn) Header() Header { return c.header }

// NetConn returns the underlying connection (as crypto/tls's Conn.NetConn does), for code that
// needs the socket itself, e.g. to read its TCP state.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// RemoteAddr is the client's address.
func (c *Conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr is the address the client dialed.
func (c *Conn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

func (c *Conn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
