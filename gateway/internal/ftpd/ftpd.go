// Package ftpd is Ferry's FTP/FTPS front end: fclairamb/ftpserverlib drivers over storage.FS.
//
// Users, homes, permissions and object metadata are the same as for SFTP: the FS a user gets
// from Deps.Storage is already restricted and jailed. The part that matters most is the upload
// lifecycle. FTP's stream mode ends an upload by closing the data connection, so a client that
// is killed mid-transfer looks exactly like one that finished. An upload is therefore committed
// only when the transfer ended cleanly (EOF on the data connection, and on a TLS data channel the
// client's close_notify) and the control connection is still alive afterwards; anything else
// (ABOR, a reset, a dead control connection, a storage error) aborts it and nothing becomes visible.
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
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// TLS modes.
const (
	TLSRequired = "required" // AUTH TLS before USER, PROT P for data (the default)
	TLSOptional = "optional" // FTPS when the client asks; plaintext logins accepted
	TLSNone     = "none"     // no TLS at all; plaintext logins only
)

// Defaults applied by New to zero Config fields.
const (
	DefaultIdleTimeout  = 5 * time.Minute
	DefaultLoginTimeout = 30 * time.Second
	DefaultCommitGrace  = 50 * time.Millisecond
	// DefaultDataConnectTimeout is ftpserverlib's own default.
	DefaultDataConnectTimeout = 30 * time.Second
	DefaultBanner             = "Ferry FTP server ready"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("ftpd: server closed")

// Config is the FTP front end's configuration.
type Config struct {
	// ListenAddr is the control address for ListenAndServe (plain FTP and explicit FTPS), e.g. ":2121".
	ListenAddr string
	// PublicHost is the address put in PASV replies: an IPv4 address, or a host name resolved at
	// each PASV (behind NAT or a load balancer). Empty: the local address of the control connection.
	PublicHost string
	// PassivePorts bounds the passive data ports; zero means any free port.
	PassivePorts PortRange
	// PassiveHandoff serves passive data behind a load balancer (see ServeDemux): PASV and EPSV
	// replies carry a port of PassivePorts (required) that the load balancer forwards to the FTP
	// listener, and the data connection that arrives there for that port is handed to the
	// transfer. No listener of this process serves the range itself.
	PassiveHandoff bool
	// ImplicitTLSPort is, for ServeDemux, the port whose connections are implicit FTPS; 0 = none.
	ImplicitTLSPort int
	// ActiveEnabled allows PORT/EPRT (off by default: passive works through NAT and firewalls).
	ActiveEnabled bool
	TLS           TLSConfig
	// IdleTimeout closes control connections idle this long, and data connections that move no
	// byte for this long (the transfer is then aborted). Default 5m.
	IdleTimeout time.Duration
	// LoginTimeout closes a control connection that has not logged in this long after it was
	// accepted, whatever it sends meanwhile (NOOP, FEAT, failed USER…): it is counted from the
	// accept and nothing extends it. Default 30s.
	LoginTimeout time.Duration
	// Banner is the 220 greeting.
	Banner string
	// MaxClients limits simultaneous control connections; 0 means no limit.
	MaxClients int
	// DataConnectTimeout is how long a PASV/EPSV waits for the client's data connection before
	// the transfer fails with 425 (default 30s, ftpserverlib's).
	DataConnectTimeout time.Duration
	// CommitGrace bounds how long an upload whose data connection closed without a TLS
	// close_notify (plain FTP) waits for a dying client's control connection to close before
	// committing. A killed client closes both connections at once; the wait covers their FINs
	// arriving out of order, and is derived from the control connection's minimum RTT (see
	// commitGrace): MinCommitGrace (5 ms) on loopback or a LAN, this bound on a path the kernel has
	// not measured. Default 50ms.
	CommitGrace time.Duration
}

// PortRange is an inclusive range of TCP ports.
type PortRange struct {
	Start, End int
}

// TLSConfig configures FTPS.
type TLSConfig struct {
	// Mode is TLSRequired (default), TLSOptional or TLSNone.
	Mode string
	// CertFile and KeyFile are a PEM certificate chain and key; reloaded when the files change.
	CertFile, KeyFile string
	// CertPEM and KeyPEM are the same as PEM text (e.g. from a secret in the environment),
	// instead of files.
	CertPEM, KeyPEM string
	// DevSelfSigned generates a self-signed certificate in memory (development only).
	DevSelfSigned bool
	// ImplicitListenAddr is the implicit FTPS address for ListenAndServe (e.g. ":990"); empty = none.
	ImplicitListenAddr string
}

// Authenticator checks a user's password; users.Store implements it.
type Authenticator interface {
	CheckPassword(ctx context.Context, name, password string, remote netip.Addr) (*users.User, error)
}

// Deps are the server's collaborators.
type Deps struct {
	Auth Authenticator
	// Storage returns the user's view of storage, already restricted to their permissions and home.
	Storage func(u *users.User) (storage.FS, error)
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Available, when set, is asked before each new control connection: while it returns an
	// error the client gets "421 Service temporarily unavailable" and is disconnected, instead
	// of being let in to a gateway that cannot store its files.
	Available func() error
	// Observer, when set, counts sessions, logins and refusals.
	Observer Observer
	// Gate, when set, admits each control connection at accept (per-address and pre-auth
	// limits, bans; package defender) before any FTP or TLS work.
	Gate Gate
	// Sessions, when set, learns of every login so that revoking the user closes the connection.
	Sessions Sessions
}

// Gate admits connections; *defender.Defender implements it. closeConn ends the connection
// (a ban closes the connections of its address that have not logged in).
type Gate interface {
	Admit(remote netip.Addr, protocol string, closeConn func()) (*defender.Ticket, error)
}

// Sessions follows logged-in connections; *sessions.Registry implements it. revoke must not
// block; leave is called when the connection ends.
type Sessions interface {
	Join(u *users.User, protocol string, remote netip.Addr, revoke func(reason string)) (leave func())
}

// Observer is told about connections, logins and refusals, for metrics.
type Observer interface {
	// SessionStarted is called for each accepted control connection; ended when it closes.
	SessionStarted(protocol string) (ended func())
	Login(protocol string, ok bool)
	Refused(protocol, reason string)
}

type noObserver struct{}

func (noObserver) SessionStarted(string) func() { return func() {} }
func (noObserver) Login(string, bool)           {}
func (noObserver) Refused(string, string)       {}

// Refusal reasons given to Observer.Refused.
const (
	RefusedMaxClients  = "max_clients"
	RefusedUnavailable = "unavailable"
	RefusedTLSRequired = "tls_required"
)

// Server is an FTP/FTPS server. Like net/http's Server: Serve on listeners, Shutdown to drain.
type Server struct {
	cfg       Config
	deps      Deps
	log       *slog.Logger
	tlsConfig *tls.Config     // nil when Mode is TLSNone
	handoff   *passiveHandoff // nil unless Config.PassiveHandoff
	passive   *passivePorts   // passive ports bound to the control address; nil with handoff
	publicIP  string          // PublicHost when it is an IPv4 address
	publicDNS string          // PublicHost when it is a name

	closing   atomic.Bool
	conns     atomic.Int64 // accepted control connections not yet disconnected
	transfers atomic.Int64 // file transfers not yet closed, in every session
	// siteKey prefixes the SITE parameters through which Ferry has the library answer EPSV ALL
	// and refuse what follows it (epsvall.go); random, so no client can send one.
	siteKey string

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	pending   map[string]*controlConn // accepted, not yet seen by ClientConnected
	sessions  map[*session]struct{}
}

// New validates cfg, loads or generates the TLS certificate and returns a Server.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Auth == nil || deps.Storage == nil {
		return nil, errors.New("ftpd: Deps.Auth and Deps.Storage are required")
	}
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	if err := installEPSVAll(); err != nil {
		return nil, err
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if deps.Observer == nil {
		deps.Observer = noObserver{}
	}
	s := &Server{
		cfg:       cfg,
		deps:      deps,
		log:       log.With("component", "ftpd"),
		listeners: map[net.Listener]struct{}{},
		pending:   map[string]*controlConn{},
		sessions:  map[*session]struct{}{},
		siteKey:   "ferry-" + newTransferID(),
	}
	if cfg.PassiveHandoff {
		s.handoff = newPassiveHandoff(cfg.PassivePorts, s.log.With("passive", "handoff"))
	} else {
		s.passive = newPassivePorts(cfg.PassivePorts, cfg.DataConnectTimeout, s.log.With("passive", "bound"))
	}
	if ip, err := netip.ParseAddr(cfg.PublicHost); err == nil {
		s.publicIP = ip.Unmap().String()
	} else {
		s.publicDNS = cfg.PublicHost
	}
	if cfg.TLS.Mode != TLSNone {
		s.tlsConfig, err = loadTLS(cfg.TLS, cfg.PublicHost, s.log)
		if err != nil {
			return nil, err
		}
	}
	switch cfg.TLS.Mode {
	case TLSOptional:
		s.log.Warn("FTP TLS is optional: clients may log in with plaintext passwords")
	case TLSNone:
		s.log.Warn("FTP TLS is disabled: every password and file crosses the network in clear")
	}
	return s, nil
}

func withDefaults(cfg Config) (Config, error) {
	var errs []error
	if cfg.TLS.Mode == "" {
		cfg.TLS.Mode = TLSRequired
	}
	switch cfg.TLS.Mode {
	case TLSRequired, TLSOptional:
		if !cfg.TLS.DevSelfSigned && !cfg.TLS.hasCert() {
			errs = append(errs, fmt.Errorf("tls mode %q needs cert_file and key_file, or cert_pem and key_pem (or dev_self_signed)", cfg.TLS.Mode))
		}
	case TLSNone:
		if cfg.TLS.ImplicitListenAddr != "" {
			errs = append(errs, errors.New("an implicit FTPS listener needs tls mode required or optional"))
		}
	default:
		errs = append(errs, fmt.Errorf("tls mode %q: want required, optional or none", cfg.TLS.Mode))
	}
	if p := cfg.PassivePorts; p != (PortRange{}) && (p.Start < 1 || p.End > 65535 || p.Start > p.End) {
		errs = append(errs, fmt.Errorf("passive ports %d-%d: want 1 <= start <= end <= 65535", p.Start, p.End))
	}
	if cfg.PassiveHandoff && cfg.PassivePorts == (PortRange{}) {
		errs = append(errs, errors.New("passive handoff needs passive ports: the range the load balancer forwards"))
	}
	if p := cfg.ImplicitTLSPort; p < 0 || p > 65535 || p != 0 && p >= cfg.PassivePorts.Start && p <= cfg.PassivePorts.End {
		errs = append(errs, fmt.Errorf("implicit TLS port %d: want a port outside the passive range", p))
	}
	if ip, err := netip.ParseAddr(cfg.PublicHost); err == nil && !ip.Unmap().Is4() {
		errs = append(errs, fmt.Errorf("public host %s: PASV replies carry IPv4 addresses only", cfg.PublicHost))
	}
	if cfg.IdleTimeout < 0 || cfg.LoginTimeout < 0 || cfg.CommitGrace < 0 || cfg.MaxClients < 0 || cfg.DataConnectTimeout < 0 {
		errs = append(errs, errors.New("idle timeout, login timeout, data connect timeout, commit grace and max clients must not be negative"))
	}
	if cfg.LoginTimeout == 0 {
		cfg.LoginTimeout = DefaultLoginTimeout
	}
	if cfg.DataConnectTimeout == 0 {
		cfg.DataConnectTimeout = DefaultDataConnectTimeout
	}
	cfg.DataConnectTimeout = max(cfg.DataConnectTimeout, time.Second) // the library counts whole seconds
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.IdleTimeout < time.Second {
		cfg.IdleTimeout = time.Second
	}
	if cfg.CommitGrace == 0 {
		cfg.CommitGrace = DefaultCommitGrace
	}
	if cfg.Banner == "" {
		cfg.Banner = DefaultBanner
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("ftpd config: %w", err)
	}
	return cfg, nil
}

// Serve accepts plain FTP and explicit FTPS (AUTH TLS) control connections on l until Shutdown.
// It always returns a non-nil error; ErrServerClosed after Shutdown.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeImplicitTLS accepts implicit FTPS control connections (TLS from the first byte) on l.
func (s *Server) ServeImplicitTLS(l net.Listener) error {
	if s.tlsConfig == nil {
		return errors.New("ftpd: implicit FTPS needs TLS")
	}
	return s.serve(l, true)
}

// ListenAndServe listens on Config.ListenAddr and/or TLS.ImplicitListenAddr (at least one must
// be set) and serves until Shutdown or a listener fails.
func (s *Server) ListenAndServe() error {
	type srv struct {
		addr  string
		serve func(net.Listener) error
	}
	var todo []srv
	if s.cfg.ListenAddr != "" {
		todo = append(todo, srv{s.cfg.ListenAddr, s.Serve})
	}
	if s.cfg.TLS.ImplicitListenAddr != "" {
		todo = append(todo, srv{s.cfg.TLS.ImplicitListenAddr, s.ServeImplicitTLS})
	}
	if len(todo) == 0 {
		return errors.New("ftpd: no listen address")
	}
	var ls []net.Listener
	for _, t := range todo {
		l, err := net.Listen("tcp", t.addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return fmt.Errorf("ftpd: listen %s: %w", t.addr, err)
		}
		ls = append(ls, l)
	}
	errc := make(chan error, len(ls))
	for i, t := range todo {
		go func() { errc <- t.serve(ls[i]) }()
	}
	err := <-errc
	// One listener stopped: stop the others too, so the caller sees a single outcome.
	for _, l := range ls {
		l.Close()
	}
	for range len(ls) - 1 {
		<-errc
	}
	return err
}

func (s *Server) serve(l net.Listener, implicit bool) error {
	cl := &ctlListener{Listener: l, srv: s, implicit: implicit}
	var served net.Listener = cl
	if implicit {
		served = tls.NewListener(cl, s.tlsConfig)
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

	mode := "explicit"
	if implicit {
		mode = "implicit"
	}
	s.log.Info("serving FTP", "addr", l.Addr().String(), "tls", s.cfg.TLS.Mode, "ftps", mode)
	fsrv := ftpserver.NewFtpServer(&mainDriver{srv: s, implicit: implicit, listener: served})
	fsrv.Logger = s.log.With("lib", "ftpserverlib")
	if err := fsrv.Listen(); err != nil {
		return fmt.Errorf("ftpd: %w", err)
	}
	err := fsrv.Serve()
	if s.closing.Load() {
		return ErrServerClosed
	}
	if err == nil {
		err = errors.New("ftpd: listener closed")
	}
	return err
}

// AbortGrace bounds how long Shutdown waits, once ctx has ended, for the transfers it cut off
// to finish aborting (their multipart uploads aborted in S3).
const AbortGrace = 30 * time.Second

// Shutdown stops accepting connections, closes idle sessions at once and waits for transfers in
// progress to end. When ctx ends first it closes every session, which aborts unfinished uploads
// (and closes their data connections), waits up to AbortGrace for those aborts to finish, and
// returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()

	if s.passive != nil {
		defer s.passive.closeAll()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeSessions(false) == 0 && s.conns.Load() == 0 && s.transfers.Load() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.closeSessions(true)
			grace := time.NewTimer(AbortGrace)
			defer grace.Stop()
			for s.transfers.Load() > 0 || s.conns.Load() > 0 {
				select {
				case <-grace.C:
					s.log.Error("shutdown: transfers still aborting after the grace period",
						"transfers", s.transfers.Load(), "clients", s.conns.Load())
					return ctx.Err()
				case <-tick.C:
				}
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// PassivePortsExhausted counts the PASV/EPSV commands refused because every passive port was
// in use (ferry_ftp_passive_ports_exhausted_total).
func (s *Server) PassivePortsExhausted() uint64 {
	if s.handoff != nil {
		return s.handoff.exhausted.Load()
	}
	return s.passive.exhausted.Load()
}

// PassivePortsInUse is the number of passive ports reserved or serving a transfer.
func (s *Server) PassivePortsInUse() int {
	if s.handoff != nil {
		return s.handoff.inUse()
	}
	return s.passive.inUse()
}

// closeSessions closes sessions without a transfer in progress (all with force) and returns how
// many sessions remain.
func (s *Server) closeSessions(force bool) int {
	s.mu.Lock()
	var toClose []*session
	for sess := range s.sessions {
		if force || !sess.busy() {
			toClose = append(toClose, sess)
		}
	}
	n := len(s.sessions)
	s.mu.Unlock()
	for _, sess := range toClose {
		sess.close()
	}
	return n
}

// clients is the number of connected control connections.
func (s *Server) clients() int64 { return s.conns.Load() }
