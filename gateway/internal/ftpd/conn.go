package ftpd

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/defender"
)

// ctlListener wraps the control listener: it enforces MaxClients and wraps each connection so an
// upload can tell whether its client is still there when the data connection closes.
type ctlListener struct {
	net.Listener
	srv      *Server
	implicit bool
}

func (l *ctlListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			// Returned unchanged: ftpserverlib recognises a closed listener by this error.
			return nil, err
		}
		s := l.srv
		if max := s.cfg.MaxClients; max > 0 && s.conns.Load() >= int64(max) {
			s.log.Warn("refusing connection: too many clients", "remote", c.RemoteAddr().String(), "max_clients", max)
			if !l.implicit {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				io.WriteString(c, "421 Too many connections, try again later\r\n")
			}
			c.Close()
			continue
		}
		cc := newControlConn(c)
		if g := s.deps.Gate; g != nil {
			protocol := "ftp"
			if l.implicit {
				protocol = "ftps"
			}
			t, err := g.Admit(remoteIP(c.RemoteAddr()), protocol, func() { cc.Close() })
			if err != nil {
				// A ban gets no reply; a limit is said, so that a real client knows to retry.
				if !l.implicit && !errors.Is(err, defender.ErrBanned) {
					c.SetWriteDeadline(time.Now().Add(time.Second))
					io.WriteString(c, "421 Too many connections, try again later\r\n")
				}
				c.Close()
				continue
			}
			cc.ticket = t
		}
		// Counted from the accept: nothing the client sends before logging in extends it.
		cc.loginTimer = time.AfterFunc(s.cfg.LoginTimeout, func() {
			if !cc.loggedIn.Load() {
				s.log.Info("login timeout: closing the control connection", "remote", c.RemoteAddr().String(),
					"login_timeout", s.cfg.LoginTimeout)
				cc.Close()
			}
		})
		s.conns.Add(1)
		s.mu.Lock()
		s.pending[connKey(cc.LocalAddr(), cc.RemoteAddr())] = cc
		s.mu.Unlock()
		return cc, nil
	}
}

func connKey(local, remote net.Addr) string { return local.String() + "|" + remote.String() }

// remoteIP is the client's address (behind a PROXY-protocol load balancer, the header's).
func remoteIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// controlConn is a control connection as accepted (below TLS when there is TLS). It notices the
// peer going away: a read error or EOF, or (on Linux) the socket leaving ESTABLISHED, which the
// kernel records when the FIN or RST arrives whatever the goroutines are doing.
type controlConn struct {
	net.Conn
	tcp      *net.TCPConn // nil when the listener does not give TCP connections
	dead     chan struct{}
	deadOnce sync.Once

	closeOnce sync.Once
	closeErr  error

	ticket     *defender.Ticket // nil without a Gate
	loginTimer *time.Timer
	loggedIn   atomic.Bool
}

// login records that the client logged in: the login timeout no longer applies and the
// connection no longer counts as not logged in.
func (c *controlConn) login() {
	c.loggedIn.Store(true)
	if c.loginTimer != nil {
		c.loginTimer.Stop()
	}
	c.ticket.LoggedIn()
}

func newControlConn(c net.Conn) *controlConn {
	return &controlConn{Conn: c, tcp: tcpConnOf(c), dead: make(chan struct{})}
}

// tcpConnOf returns the TCP socket under c, looking through wrappers that expose what they wrap
// as crypto/tls's Conn does (NetConn): a connection accepted behind a load balancer is a
// proxyproto.Conn.
func tcpConnOf(c net.Conn) *net.TCPConn {
	for range 8 {
		switch x := c.(type) {
		case *net.TCPConn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

func (c *controlConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && !isTimeout(err) {
		c.markDead()
	}
	return n, err
}

// Close is idempotent: Shutdown closes the connection under ftpserverlib, which then closes it
// again on its way out and would log the second close's error.
func (c *controlConn) Close() error {
	c.markDead()
	c.closeOnce.Do(func() {
		c.closeErr = c.Conn.Close()
		if c.loginTimer != nil {
			c.loginTimer.Stop()
		}
		c.ticket.Close()
	})
	return c.closeErr
}

func (c *controlConn) markDead() { c.deadOnce.Do(func() { close(c.dead) }) }

// alive reports whether the client is still connected, waiting up to grace for a closing
// connection to show it.
func (c *controlConn) alive(grace time.Duration) bool {
	if c.gone() {
		return false
	}
	if grace <= 0 {
		return true
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.dead:
		return false
	case <-t.C:
		return !c.gone()
	}
}

func (c *controlConn) gone() bool {
	select {
	case <-c.dead:
		return true
	default:
	}
	return c.tcp != nil && peerClosed(c.tcp)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dataListener wraps a passive data listener (below TLS) so uploads can see how their data
// connection ended, and so idle data connections time out.
type dataListener struct {
	net.Listener
	idle time.Duration
}

func (l *dataListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &dataConn{Conn: c, idle: l.idle}, nil
}

// dataConn is a passive data connection as accepted. rawEOF records that the peer closed the TCP
// stream: under TLS, an EOF that crypto/tls reports without rawEOF came from a close_notify alert
// (crypto/tls stops reading at the alert), while a client killed at a record boundary gives an
// EOF with rawEOF set, which crypto/tls does not tell apart by itself.
type dataConn struct {
	net.Conn
	idle   time.Duration
	rawEOF atomic.Bool
}

func (c *dataConn) Read(p []byte) (int, error) {
	if c.idle > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	n, err := c.Conn.Read(p)
	if errors.Is(err, io.EOF) {
		c.rawEOF.Store(true)
	}
	return n, err
}

func (c *dataConn) Write(p []byte) (int, error) {
	if c.idle > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Write(p)
}
