package ftpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"

	"github.com/ferrygw/ferry/gateway/internal/defender"
	"github.com/ferrygw/ferry/gateway/internal/proxyproto"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// mainDriver is ftpserverlib's per-listener driver: settings, greetings, logins.
type mainDriver struct {
	srv      *Server
	implicit bool
	listener net.Listener
}

var (
	_ ftpserver.MainDriver                        = (*mainDriver)(nil)
	_ ftpserver.MainDriverExtensionUserVerifier   = (*mainDriver)(nil)
	_ ftpserver.MainDriverExtensionPassiveWrapper = (*mainDriver)(nil)
)

var (
	errTLSRequired = errors.New("TLS is required: send AUTH TLS before USER")
	errLogin       = errors.New("invalid user name or password")
	errUnavailable = errors.New("service unavailable, try again later")
)

func (d *mainDriver) GetSettings() (*ftpserver.Settings, error) {
	s := d.srv
	st := &ftpserver.Settings{
		Listener:                d.listener,
		Banner:                  s.cfg.Banner,
		PublicIPResolver:        d.publicIP,
		IdleTimeout:             int(s.cfg.IdleTimeout / time.Second),
		ConnectionTimeout:       int(s.cfg.DataConnectTimeout / time.Second),
		ActiveTransferPortNon20: true,
		DisableActiveMode:       !s.cfg.ActiveEnabled,
		EnableHASH:              true,
		DefaultTransferType:     ftpserver.TransferTypeBinary,
		// TLS requirements are enforced by this package so refusals are 5xx, not ftpserverlib's
		// 421 (which lftp and others retry forever).
		TLSRequired: ftpserver.ClearOrEncrypted,
	}
	if d.implicit {
		st.TLSRequired = ftpserver.ImplicitEncryption
	}
	if s.handoff != nil {
		st.PassiveTransferPortRange = s.handoff
	} else {
		st.PassiveTransferPortRange = portGetter{p: s.passive, ip: passiveAddr(d.listener)}
	}
	return st, nil
}

// publicIP is the address for PASV replies (EPSV replies carry only a port).
func (d *mainDriver) publicIP(cc ftpserver.ClientContext) (string, error) {
	s := d.srv
	switch {
	case s.publicIP != "":
		return s.publicIP, nil
	case s.publicDNS != "":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", s.publicDNS)
		if err != nil || len(ips) == 0 {
			return "", fmt.Errorf("resolve public host %s: %w", s.publicDNS, err)
		}
		return ips[0].Unmap().String(), nil
	}
	if ta, ok := cc.LocalAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok && ip.Unmap().Is4() {
			return ip.Unmap().String(), nil
		}
	}
	return "", errors.New("PASV needs an IPv4 address: use EPSV")
}

func (d *mainDriver) ClientConnected(cc ftpserver.ClientContext) (string, error) {
	s := d.srv
	key := connKey(cc.LocalAddr(), cc.RemoteAddr())
	s.mu.Lock()
	ctl := s.pending[key]
	delete(s.pending, key)
	s.mu.Unlock()
	if ctl == nil {
		// Cannot happen with our listeners; refuse rather than run without client liveness.
		return "internal error", errors.New("ftpd: unknown control connection")
	}
	ctx, cancel := context.WithCancel(context.Background())
	sess := &session{
		srv:    s,
		cc:     cc,
		ctl:    ctl,
		ctx:    ctx,
		cancel: cancel,
		id:     newTransferID(),
		log:    s.log.With("remote", cc.RemoteAddr().String(), "client_id", cc.ID()),
		bindIP: passiveAddr(d.listener),
	}
	cc.SetExtra(sess)
	s.mu.Lock()
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	if s.closing.Load() {
		sess.close()
	}
	sess.log.Debug("client connected")
	return s.cfg.Banner, nil
}

func (d *mainDriver) ClientDisconnected(cc ftpserver.ClientContext) {
	s := d.srv
	s.conns.Add(-1)
	sess, _ := cc.Extra().(*session)
	if sess == nil {
		return
	}
	// Cancel first: a transfer still running sees its context end and aborts.
	sess.cancel()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	sess.mu.Lock()
	leave := sess.leave
	sess.leave = nil
	sess.mu.Unlock()
	if leave != nil {
		leave()
	}
	sess.log.Debug("client disconnected", "user", sess.userName())
}

// PreAuthUser refuses USER on a plaintext control connection when TLS is required: 530, so that
// clients report it instead of retrying.
func (d *mainDriver) PreAuthUser(cc ftpserver.ClientContext, user string) error {
	if d.srv.cfg.TLS.Mode == TLSRequired && !cc.HasTLSForControl() {
		d.srv.log.Info("plaintext login refused: TLS required", "remote", cc.RemoteAddr().String(), "user", user)
		d.srv.deps.Observer.Refused("ftp", RefusedTLSRequired)
		return errTLSRequired
	}
	return nil
}

func (d *mainDriver) AuthUser(cc ftpserver.ClientContext, name, pass string) (ftpserver.ClientDriver, error) {
	sess, _ := cc.Extra().(*session)
	if sess == nil {
		return nil, errUnavailable
	}
	if err := d.PreAuthUser(cc, name); err != nil {
		return nil, err
	}
	s := d.srv
	remote := proxyproto.IP(cc.RemoteAddr())
	u, err := s.deps.Auth.CheckPassword(defender.WithTicket(sess.ctx, sess.ctl.ticket), name, pass, remote)
	if err != nil || u == nil {
		sess.log.Info("login failed", "user", name, "protocol", sess.protocol(), "err", err)
		s.deps.Observer.Login(sess.protocol(), false)
		return nil, errLogin
	}
	s.deps.Observer.Login(sess.protocol(), true)
	fsys, err := s.deps.Storage(u)
	if err != nil {
		sess.log.Error("login: storage unavailable", "user", name, "err", err)
		return nil, errUnavailable
	}
	sess.ctl.login()
	sess.login(u, fsys)
	sess.log.Info("login", "protocol", sess.protocol())
	if s.deps.Sessions != nil {
		leave := s.deps.Sessions.Join(u, sess.protocol(), remote, func(reason string) {
			sess.log.Info("session revoked: closing the connection", "reason", reason)
			sess.close()
		})
		sess.mu.Lock()
		sess.leave = leave
		sess.mu.Unlock()
	}
	return &clientDriver{s: sess}, nil
}

func (d *mainDriver) GetTLSConfig() (*tls.Config, error) {
	if d.srv.tlsConfig == nil {
		return nil, errors.New("TLS is not enabled on this server")
	}
	return d.srv.tlsConfig, nil
}

func (d *mainDriver) WrapPassiveListener(l net.Listener) (net.Listener, error) {
	if h := d.srv.handoff; h != nil {
		hl, err := h.wrap(l)
		if err != nil {
			l.Close() // ftpserverlib does not close it when wrapping fails
			d.srv.log.Error("passive listener", "err", err)
			return nil, err
		}
		l = hl
	}
	if p := d.srv.passive; p != nil {
		bl, err := p.wrap(l)
		if err != nil {
			l.Close()
			d.srv.log.Error("passive listener", "err", err)
			return nil, err
		}
		l = bl
	}
	return &dataListener{Listener: l, idle: d.srv.cfg.IdleTimeout}, nil
}

// session is one control connection.
type session struct {
	srv    *Server
	cc     ftpserver.ClientContext
	ctl    *controlConn
	ctx    context.Context // cancelled when the control connection ends
	cancel context.CancelFunc
	id     string // session id: random, shared by the connection's transfers (gateway events)
	log    *slog.Logger

	mu        sync.Mutex
	user      *users.User
	fsys      storage.FS
	leave     func() // ends the session's registration (Deps.Sessions)
	transfers int    // file transfers in progress
	sizeHint  int64  // from ALLO, for the next STOR

	epsvAll atomic.Bool // the client sent EPSV ALL: only EPSV may set up data connections
	bindIP  netip.Addr  // the control listener's address, where passive ports are bound
}

func (s *session) login(u *users.User, fsys storage.FS) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user, s.fsys = u, fsys
	s.log = s.log.With("user", u.Name)
}

func (s *session) userName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.user == nil {
		return ""
	}
	return s.user.Name
}

func (s *session) protocol() string {
	if s.cc.HasTLSForControl() {
		return "ftps"
	}
	return "ftp"
}

func (s *session) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transfers > 0
}

func (s *session) transferStarted() {
	s.mu.Lock()
	s.transfers++
	s.mu.Unlock()
	s.srv.transfers.Add(1)
}

func (s *session) transferEnded() {
	s.mu.Lock()
	s.transfers--
	s.mu.Unlock()
	s.srv.transfers.Add(-1)
}

func (s *session) takeSizeHint() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.sizeHint
	s.sizeHint = 0
	return h
}

// close drops the client; a transfer in progress aborts. It closes the connection below
// ftpserverlib rather than calling ClientContext.Close, which races with the session's own
// goroutine (ftpserverlib v0.30.0 writes its connClosed flag unsynchronised): the session
// goroutine sees the read fail and ends itself, closing any transfer.
func (s *session) close() {
	s.cancel()
	if err := s.ctl.Close(); err != nil {
		s.log.Debug("close client", "err", err)
	}
}
