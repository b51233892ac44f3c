package ftpd

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/defender"
	"github.com/ferrygw/ferry/gateway/internal/proxyproto"
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
		if s.deps.Available != nil {
			if err := s.deps.Available(); err != nil {
				s.log.Warn("refusing connection: service unavailable", "remote", c.RemoteAddr().String(), "reason", err.Error())
				s.deps.Observer.Refused(l.protocol(), RefusedUnavailable)
				l.refuse(c, "421 Service temporarily unavailable (storage unreachable), try again later\r\n")
				continue
			}
		}
		if max := s.cfg.MaxClients; max > 0 && s.conns.Load() >= int64(max) {
			s.log.Warn("refusing connection: too many clients", "remote", c.RemoteAddr().String(), "max_clients", max)
			s.deps.Observer.Refused(l.protocol(), RefusedMaxClients)
			l.refuse(c, "421 Too many connections, try again later\r\n")
			continue
		}
		cc := newControlConn(c)
		if g := s.deps.Gate; g != nil {
			t, err := g.Admit(proxyproto.IP(c.RemoteAddr()), l.protocol(), func() { cc.Close() })
			if err != nil {
				// A ban gets no reply; a limit is said, so that a real client knows to retry.
				if errors.Is(err, defender.ErrBanned) {
					c.Close()
				} else {
					l.refuse(c, "421 Too many connections, try again later\r\n")
				}
				continue
			}
			cc.ticket = t
		}
		cc.ended = s.deps.Observer.SessionStarted(l.protocol())
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

// refuse sends reply (a 421) on a plain control connection and closes it; an implicit-TLS
// connection has no TLS yet to send it in and is only closed.
func (l *ctlListener) refuse(c net.Conn, reply string) {
	if !l.implicit {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(c, reply)
	}
	c.Close()
}

func (l *ctlListener) protocol() string {
	if l.implicit {
		return "ftps"
	}
	return "ftp"
}

func connKey(local, remote net.Addr) string { return local.String() + "|" + remote.String() }

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
	ended     func() // tells the Observer the session ended; nil for none

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
		if c.ended != nil {
			c.ended()
		}
		if c.loginTimer != nil {
			c.loginTimer.Stop()
		}
		c.ticket.Close()
	})
	return c.closeErr
}

func (c *controlConn) markDead() { c.deadOnce.Do(func() { close(c.dead) }) }

// alive reports whether the client is still connected after an upload's data stream ended
// without a TLS close_notify, waiting up to the commit grace for a dying client's control
// connection to show it closing (see commitGrace); maxGrace bounds that wait, 0 skips it.
func (c *controlConn) alive(maxGrace time.Duration) bool {
	st := c.state()
	if st.closed {
		return false
	}
	grace := commitGrace(st, maxGrace)
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

// connState is what the kernel knows of a TCP connection (tcpState).
type connState struct {
	closed bool          // the peer sent FIN or RST
	minRTT time.Duration // the lowest round trip the kernel measured; 0 if none yet
}

// MinCommitGrace is the shortest commit grace, for the skew between two FINs a dying client's
// kernel sends on a quiet path (loopback, a LAN). On an idle host they leave microseconds
// apart; on a busy one the exiting task is descheduled between its closes. With 1 ms a killed
// curl's FINs came 3-5 ms apart in CI and its truncated upload was committed; with six busy
// loops on two cores, 3 ms still let killed clients commit in 2 of 6 runs of the killed-client
// test, 5 ms in none of 8.
const MinCommitGrace = 5 * time.Millisecond

// commitGrace is how long to wait for a killed client's control FIN once its data FIN arrived.
// A killed client's kernel closes both connections at once (Linux closes an exiting task's
// files in no promised order), so the two FINs leave together and travel the same path: they
// arrive apart by the path's variation in delay, not by its delay. That is taken as at most one
// minimum round trip of the control connection (the path's floor; the smoothed RTT and its
// deviation include the client's delayed ACKs and think time, tens of milliseconds on a
// request/response connection), at least MinCommitGrace and at most maxGrace; with no RTT
// measured it is maxGrace. So the wait costs a client at most one more round trip per file,
// where a fixed 50 ms cost each small file on loopback 50 ms of nothing.
// Behind a load balancer that passes TCP through (AWS's NLB) the RTT is the client's; behind one
// that terminates TCP it is the balancer's, whose forwarding keeps the two FINs as close as the
// client sent them.
func commitGrace(st connState, maxGrace time.Duration) time.Duration {
	if maxGrace <= 0 {
		return 0
	}
	if st.minRTT <= 0 {
		return maxGrace
	}
	return min(max(st.minRTT, MinCommitGrace), maxGrace)
}

func (c *controlConn) gone() bool { return c.state().closed }

func (c *controlConn) state() connState {
	select {
	case <-c.dead:
		return connState{closed: true}
	default:
	}
	if c.tcp == nil {
		return connState{}
	}
	return tcpState(c.tcp)
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
		return nil, &dataError{op: opAccept, cause: err}
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
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		c.rawEOF.Store(true)
	default:
		err = &dataError{op: opRead, cause: err}
	}
	return n, err
}

func (c *dataConn) Write(p []byte) (int, error) {
	if c.idle > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		err = &dataError{op: opWrite, cause: err}
	}
	return n, err
}

// Operations of a data connection, as dataError words them.
const (
	opAccept = "the client did not open the data connection"
	opRead   = "data connection lost while receiving"
	opWrite  = "data connection lost while sending"
)

// dataError is a data connection's failure as a client may see it. ftpserverlib puts the text
// of these errors in its replies ("Issue during transfer: …", "425 failed to accept …"), and
// Go's network errors name both sockets ("read tcp 127.0.0.1:50001->…"): the reply keeps the
// reason alone, the log and errors.Is/As the whole error (Unwrap). Timeout and Temporary are
// the cause's, so crypto/tls and ftpserverlib treat it as before.
type dataError struct {
	op    string
	cause error
}

func (e *dataError) Error() string {
	var errno syscall.Errno
	switch {
	case e.op == opAccept:
		return e.op
	case isTimeout(e.cause):
		return e.op + ": timed out"
	case errors.Is(e.cause, net.ErrClosed):
		return e.op + ": closed"
	case errors.As(e.cause, &errno):
		return e.op + ": " + errno.Error()
	}
	return e.op
}

func (e *dataError) Unwrap() error { return e.cause }
func (e *dataError) Timeout() bool { return isTimeout(e.cause) }

func (e *dataError) Temporary() bool {
	var ne interface{ Temporary() bool }
	return errors.As(e.cause, &ne) && ne.Temporary()
}

var _ net.Error = (*dataError)(nil)
