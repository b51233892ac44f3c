package ftpd

import (
	"errors"
	"net"
	"sync"
)

// ServeDemux serves a listener that carries everything a load balancer forwards to this
// replica's FTP port (Config.PassiveHandoff), telling connections apart by the port the client
// dialed: the connection's LocalAddr, which a PROXY-protocol listener (package proxyproto) sets
// from the header. A port of Config.PassivePorts is a data connection for the PASV waiting on
// it, Config.ImplicitTLSPort is implicit FTPS, any other port is FTP control (plain or explicit
// FTPS). It returns ErrServerClosed after Shutdown.
func (s *Server) ServeDemux(l net.Listener) error {
	if s.handoff == nil {
		l.Close()
		return errors.New("ftpd: ServeDemux needs Config.PassiveHandoff")
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	control := newChanListener(l.Addr())
	var implicit *chanListener
	var wg sync.WaitGroup
	wg.Go(func() { s.serve(control, false) }) //nolint:errcheck // the outcome is this function's
	if s.tlsConfig != nil && s.cfg.ImplicitTLSPort != 0 {
		implicit = newChanListener(l.Addr())
		wg.Go(func() { s.serve(implicit, true) }) //nolint:errcheck
	}
	defer func() {
		control.Close()
		if implicit != nil {
			implicit.Close()
		}
		s.handoff.closeAll()
		wg.Wait()
	}()
	s.log.Info("serving FTP control, implicit FTPS and passive data by destination port", "addr", l.Addr().String(),
		"passive_ports", s.cfg.PassivePorts, "implicit_tls_port", s.cfg.ImplicitTLSPort)
	for {
		c, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			return err
		}
		port := 0
		if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
			port = ta.Port
		}
		switch {
		case s.handoff.owns(port):
			s.handoff.deliver(c, port)
		case port != 0 && port == s.cfg.ImplicitTLSPort:
			if implicit == nil {
				s.log.Warn("implicit FTPS connection refused: TLS is off", "remote", c.RemoteAddr().String())
				c.Close()
				continue
			}
			implicit.push(c)
		default:
			control.push(c)
		}
	}
}

// chanListener is a listener fed by ServeDemux.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// push waits for the server to accept c (ftpserverlib's accept loop takes connections as they
// come), or closes c when the listener is closed.
func (l *chanListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

// Accept returns the next connection; once closed, the *net.OpError wrapping net.ErrClosed by
// which ftpserverlib recognises a closed listener.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
