// Package sftpd is Ferry's SFTP front end: an SSH server whose only service is the SFTP
// subsystem, served by pkg/sftp's request server over each user's storage.FS.
//
// The shape follows net/http: New, Serve(listener), Shutdown(ctx). Uploads stream to storage
// in order (see reorderWriter), are committed by the client's close and aborted by a
// disconnect, so a killed client never leaves a partial object.
package sftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/defender"
	"github.com/ferrygw/ferry/gateway/internal/proxyproto"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/transfermem"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// Defaults for zero Config fields.
const (
	DefaultLoginTimeout     = 30 * time.Second
	DefaultWriteWindow      = 16 << 20
	DefaultWriteWaitTimeout = 30 * time.Second
	minWriteWindow          = 1 << 20 // a few of OpenSSH's largest writes
	// DefaultMaxUploads is the default limit of uploads open at once in one connection;
	// OpenSSH's sftp, WinSCP and FileZilla upload one file at a time per connection.
	DefaultMaxUploads = 8
	// DefaultMaxChannels is the default limit of channels open at once in one connection
	// (OpenSSH's sshd allows 10 sessions per connection).
	DefaultMaxChannels = 10
	// maxTxPacket is the largest read reply: clients asking for more than 32 KiB per read
	// (pkg/sftp clients with a larger MaxPacket, OpenSSH's sftp -B) get it in fewer round
	// trips. A read is never answered with more than the client asked for.
	maxTxPacket = 255 << 10
)

// ErrServerClosed is returned by Serve after Shutdown. It wraps net.ErrClosed.
var ErrServerClosed = fmt.Errorf("sftpd: server closed: %w", net.ErrClosed)

// Config tunes the server.
type Config struct {
	HostKeys     []ssh.Signer
	IdleTimeout  time.Duration // close a connection after this long without traffic; 0 = never
	LoginTimeout time.Duration // the SSH handshake and login must finish within it (default 30s)
	MaxSessions  int           // concurrent connections; more are refused; 0 = no limit
	Banner       string        // sent before login when set
	// WriteWindow bounds out-of-order upload data buffered per open file (default 16 MiB);
	// WriteWaitTimeout is how long a write beyond it waits without progress (default 30s).
	WriteWindow      int64
	WriteWaitTimeout time.Duration
	// LegacyAlgorithms also accepts SHA-1 key exchanges and MACs, CBC ciphers and ssh-rsa (SHA-1)
	// signatures of host and user keys, for old devices (warned at start). Off by default.
	LegacyAlgorithms bool
	// MaxUploads limits the uploads open at once in one connection (all its channels); an
	// open beyond it is refused (default DefaultMaxUploads).
	MaxUploads int
	// MaxChannels limits the channels open at once in one connection; more are rejected
	// (default DefaultMaxChannels).
	MaxChannels int
}

// Deps are the server's collaborators.
type Deps struct {
	Auth Authenticator
	// Storage returns the user's view: already restricted to their permissions and jailed
	// to their home.
	Storage func(u *users.User) (storage.FS, error)
	// Memory is the process's transfer memory, of which each user's reorder windows take
	// their share (default: a budget of the package transfermem defaults for this server).
	Memory *transfermem.Budget
	// Refused, when set, is told about every upload or channel refused by a limit
	// ("uploads_per_session", "channels_per_connection"), for metrics.
	Refused func(limit string)
	Logger  *slog.Logger
	// Available, when set, is asked before each new connection: while it returns an error the
	// client is told the service is temporarily unavailable (SSH disconnect reason 7) instead of
	// being let in to a gateway that cannot store its files.
	Available func() error
	// Observer, when set, counts sessions, logins and refusals.
	Observer Observer
	// Gate, when set, admits each connection at accept (per-address and pre-auth limits, bans;
	// package defender) before any SSH work.
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

// Server is an SFTP server.
type Server struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	algos algorithms

	base       context.Context // parent of every connection; cancelled when Shutdown gives up
	cancelBase context.CancelFunc

	refusing chan struct{} // bounds the connections being refused at once

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*connState]struct{}
	closing   bool
	wg        sync.WaitGroup
}

// New checks cfg and returns a server ready to Serve.
func New(cfg Config, deps Deps) (*Server, error) {
	var errs []error
	if len(cfg.HostKeys) == 0 {
		errs = append(errs, errors.New("no host keys"))
	}
	if deps.Auth == nil {
		errs = append(errs, errors.New("no authenticator"))
	}
	if deps.Storage == nil {
		errs = append(errs, errors.New("no storage"))
	}
	if cfg.IdleTimeout < 0 || cfg.LoginTimeout < 0 || cfg.WriteWaitTimeout < 0 || cfg.MaxSessions < 0 || cfg.WriteWindow < 0 ||
		cfg.MaxUploads < 0 || cfg.MaxChannels < 0 {
		errs = append(errs, errors.New("negative timeout, limit or window"))
	}
	if cfg.WriteWindow != 0 && cfg.WriteWindow < minWriteWindow {
		errs = append(errs, fmt.Errorf("write window %d is below %d bytes", cfg.WriteWindow, minWriteWindow))
	}
	algos, err := newAlgorithms(cfg.HostKeys, cfg.LegacyAlgorithms)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("sftpd: %w", errors.Join(errs...))
	}
	if cfg.LoginTimeout == 0 {
		cfg.LoginTimeout = DefaultLoginTimeout
	}
	if cfg.WriteWindow == 0 {
		cfg.WriteWindow = DefaultWriteWindow
	}
	if cfg.WriteWaitTimeout == 0 {
		cfg.WriteWaitTimeout = DefaultWriteWaitTimeout
	}
	if cfg.MaxUploads == 0 {
		cfg.MaxUploads = DefaultMaxUploads
	}
	if cfg.MaxChannels == 0 {
		cfg.MaxChannels = DefaultMaxChannels
	}
	if deps.Memory == nil {
		mem, err := transfermem.New(transfermem.Config{})
		if err != nil {
			return nil, fmt.Errorf("sftpd: %w", err)
		}
		deps.Memory = mem
	}
	if deps.Refused == nil {
		deps.Refused = func(string) {}
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Observer == nil {
		deps.Observer = noObserver{}
	}
	if cfg.LegacyAlgorithms {
		deps.Logger.Warn("legacy SSH algorithms enabled (sftp.legacy_algorithms): SHA-1 key exchanges and MACs, CBC ciphers and ssh-rsa SHA-1 signatures are accepted")
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger, algos: algos, refusing: make(chan struct{}, maxRefusing),
		listeners: map[net.Listener]struct{}{}, conns: map[*connState]struct{}{}}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	return s, nil
}

// Serve accepts connections on l until l fails or Shutdown is called (then ErrServerClosed).
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "error", err.Error(), "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("sftpd: accept: %w", err)
		}
		delay = 0
		if s.deps.Available != nil {
			if err := s.deps.Available(); err != nil {
				s.refuseUnavailable(nc, err)
				continue
			}
		}
		c := &connState{nc: nc, id: newTransferID()}
		c.touch()
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		if s.cfg.MaxSessions > 0 && len(s.conns) >= s.cfg.MaxSessions {
			s.mu.Unlock()
			s.log.Warn("connection refused: too many sessions", "remote", nc.RemoteAddr().String(), "max_sessions", s.cfg.MaxSessions)
			s.deps.Observer.Refused("sftp", RefusedMaxSessions)
			nc.Close()
			continue
		}
		s.mu.Unlock()
		// Before any SSH work: a refused connection costs an accept and a close.
		if s.deps.Gate != nil {
			t, err := s.deps.Gate.Admit(proxyproto.IP(nc.RemoteAddr()), "sftp", c.close)
			if err != nil {
				nc.Close()
				continue
			}
			c.ticket = t
		}
		s.mu.Lock()
		if s.closing { // Shutdown began while the gate decided
			s.mu.Unlock()
			c.ticket.Close()
			nc.Close()
			return ErrServerClosed
		}
		c.ended = s.deps.Observer.SessionStarted("sftp")
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// refuseUnavailable tells the client the service is temporarily unavailable, off the accept
// loop, and closes the connection.
func (s *Server) refuseUnavailable(nc net.Conn, why error) {
	s.log.Warn("connection refused: service unavailable", "remote", nc.RemoteAddr().String(), "reason", why.Error())
	s.deps.Observer.Refused("sftp", RefusedUnavailable)
	select {
	case s.refusing <- struct{}{}:
	default:
		nc.Close() // a flood while S3 is away: no goroutine each
		return
	}
	go func() {
		defer func() { <-s.refusing }()
		refuse(nc, serverVersion, unavailableMessage)
	}()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Shutdown stops accepting, closes connections as soon as they have no open file, and waits
// for them. When ctx ends first, it closes the rest (aborting their uploads) and returns
// ctx's error once they are gone.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		for c := range s.conns {
			if c.active.Load() == 0 && c.busy.Load() == 0 {
				c.close()
			}
		}
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			s.wg.Wait()
			s.cancelBase()
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			s.mu.Lock()
			for c := range s.conns {
				c.close()
			}
			s.mu.Unlock()
			s.cancelBase()
			s.wg.Wait()
			return ctx.Err()
		}
	}
}

// connState is one TCP connection.
type connState struct {
	nc      net.Conn
	id      string           // session id: random, shared by the connection's transfers (gateway events)
	ended   func()           // tells the Observer the session ended
	ticket  *defender.Ticket // nil without a Gate
	active  atomic.Int64     // open files (uploads and downloads)
	uploads atomic.Int64     // open uploads, for MaxUploads
	busy    atomic.Int64     // handlers running: the connection is not idle
	lastIO  atomic.Int64     // unix nanoseconds of the last read or write
	once    sync.Once
}

func (c *connState) touch() { c.lastIO.Store(time.Now().UnixNano()) }
func (c *connState) close() { c.once.Do(func() { c.nc.Close() }) }
func (c *connState) idle() time.Duration {
	return time.Since(time.Unix(0, c.lastIO.Load()))
}

// activityConn records traffic for the idle timeout.
type activityConn struct {
	net.Conn
	c *connState
}

func (a activityConn) Read(p []byte) (int, error) {
	n, err := a.Conn.Read(p)
	if n > 0 {
		a.c.touch()
	}
	return n, err
}

func (a activityConn) Write(p []byte) (int, error) {
	n, err := a.Conn.Write(p)
	if n > 0 {
		a.c.touch()
	}
	return n, err
}

func (s *Server) serveConn(c *connState) {
	defer s.wg.Done()
	defer func() {
		c.close()
		c.ticket.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.ended()
	}()
	remote := proxyproto.IP(c.nc.RemoteAddr())
	log := s.log.With("remote", c.nc.RemoteAddr().String())

	ctx, cancel := context.WithCancelCause(s.base)
	defer cancel(errors.New("connection closed"))
	// The handshake, including every login callback, must finish within LoginTimeout: the
	// deadline is absolute, so a silent client or one that trickles bytes is closed at it.
	loginCtx, loginCancel := context.WithTimeout(defender.WithTicket(ctx, c.ticket), s.cfg.LoginTimeout)
	c.nc.SetDeadline(time.Now().Add(s.cfg.LoginTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(activityConn{c.nc, c}, s.sshConfig(loginCtx, remote, log))
	loginCancel()
	if err != nil {
		if loginAttempted(err) {
			s.deps.Observer.Login("sftp", false)
		}
		log.Debug("ssh handshake failed", "error", err.Error())
		return
	}
	s.deps.Observer.Login("sftp", true)
	defer sconn.Close()
	c.nc.SetDeadline(time.Time{})
	u := loggedIn(sconn.Permissions)
	if u == nil { // cannot happen: every accepting callback records its user
		log.Error("login accepted without a user")
		return
	}
	c.ticket.LoggedIn()
	log = log.With("user", u.Name)
	if s.deps.Sessions != nil {
		leave := s.deps.Sessions.Join(u, "sftp", remote, func(reason string) {
			log.Info("session revoked: closing the connection", "reason", reason)
			c.close()
		})
		defer leave()
	}
	fsys, err := s.deps.Storage(u)
	if err != nil {
		log.Error("user storage unavailable", "error", err.Error())
		return
	}
	log.Info("login", "method", sconn.Permissions.Extensions[methodExtension])
	start := time.Now()
	go ssh.DiscardRequests(reqs)

	if s.cfg.IdleTimeout > 0 {
		stop := s.watchIdle(c, log)
		defer stop()
	}
	// The connection context also ends when the TCP connection does, even while handlers
	// still run (their waits must end too).
	go func() {
		sconn.Wait()
		cancel(errors.New("connection closed"))
	}()

	var sessions sync.WaitGroup
	var open atomic.Int64 // channels accepted and not yet ended
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "only SFTP sessions are served")
			log.Info("channel refused", "type", nch.ChannelType())
			continue
		}
		// Each channel costs goroutines and buffers whether or not it starts SFTP: a client
		// must not open them by the hundred on one connection.
		if open.Load() >= int64(s.cfg.MaxChannels) {
			nch.Reject(ssh.ResourceShortage, "too many channels open on this connection")
			s.deps.Refused("channels_per_connection")
			log.Info("channel refused: too many open", "max_channels", s.cfg.MaxChannels)
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			log.Debug("accept channel", "error", err.Error())
			continue
		}
		open.Add(1)
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			defer open.Add(-1)
			s.serveChannel(ctx, c, u, fsys, log, ch, chReqs)
		}()
	}
	sessions.Wait()
	log.Info("logout", "duration", time.Since(start))
}

// loginAttempted reports whether a failed handshake failed at authentication after the client
// tried a credential (not a scanner dropping after the key exchange, nor a client that only
// asked which methods exist).
func loginAttempted(err error) bool {
	var ae *ssh.ServerAuthError
	if !errors.As(err, &ae) {
		return false
	}
	for _, e := range ae.Errors {
		if !errors.Is(e, ssh.ErrNoAuth) {
			return true
		}
	}
	return false
}

// watchIdle closes c after IdleTimeout without traffic while no handler runs.
func (s *Server) watchIdle(c *connState, log *slog.Logger) (stop func()) {
	idle := s.cfg.IdleTimeout
	var t *time.Timer
	t = time.AfterFunc(idle, func() {
		since := c.idle()
		if c.busy.Load() == 0 && since >= idle {
			log.Info("idle timeout", "idle", since.Round(time.Millisecond))
			c.close()
			return
		}
		t.Reset(max(idle-since, idle/10, time.Millisecond))
	})
	return func() { t.Stop() }
}

// serveChannel answers a session channel's requests: "subsystem sftp" starts the SFTP server;
// shells, commands and port forwarding are refused.
func (s *Server) serveChannel(ctx context.Context, c *connState, u *users.User, fsys storage.FS, log *slog.Logger, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var running sync.WaitGroup
	defer running.Wait() // the connection ends only after its SFTP server finished (uploads aborted)
	started := false
	for req := range reqs {
		ok := false
		if req.Type == "subsystem" && !started {
			var sub struct{ Name string }
			if err := ssh.Unmarshal(req.Payload, &sub); err == nil && sub.Name == "sftp" {
				ok = true
			}
		}
		if req.WantReply {
			req.Reply(ok, nil)
		}
		if !ok {
			if req.Type != "env" {
				log.Debug("channel request refused", "type", req.Type)
			}
			continue
		}
		started = true
		running.Add(1)
		go func() {
			defer running.Done()
			s.runSFTP(ctx, c, u, fsys, log, ch)
			ch.Close() // ends the request loop
		}()
	}
}

func (s *Server) runSFTP(ctx context.Context, c *connState, u *users.User, fsys storage.FS, log *slog.Logger, ch ssh.Channel) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(errors.New("sftp session ended"))
	sess := &session{
		srv: s, conn: c, user: u, fs: fsys, remote: c.nc.RemoteAddr().String(), log: log, ctx: sctx,
		uploads: map[string]*upload{}, mem: s.deps.Memory.Share(u.Name),
	}
	// No sftp.WithRSAllocator: its pages are 256 KiB (pkg/sftp's largest packet) for each
	// packet in flight, so a session uploading 32 KiB writes holds 16-19 MiB until it ends,
	// outside the transfer memory budget; the exact-size packets it avoids are short-lived
	// garbage, collected cheaply now that transfer buffers are pooled (see app's memory limit).
	rs := sftp.NewRequestServer(newLimitsConn(channelRW{ch, cancel}), sess.handlers(), sftp.WithStartDirectory("/"),
		sftp.WithRSMaxTxPacket(maxTxPacket))
	err := rs.Serve()
	if err != nil && !errors.Is(err, io.EOF) {
		log.Debug("sftp session ended", "error", err.Error())
	}
}

// channelRW cancels the session as soon as the channel can no longer be read: pkg/sftp's Serve
// only returns (and aborts open uploads) after every running handler returned, so handlers
// blocked on the session context must learn about the disconnect first.
type channelRW struct {
	ssh.Channel
	cancel context.CancelCauseFunc
}

func (c channelRW) Read(p []byte) (int, error) {
	n, err := c.Channel.Read(p)
	if err != nil {
		c.cancel(fmt.Errorf("client gone: %w", err))
	}
	return n, err
}
