package transferevents

import (
	"context"
	"errors"
	"net/netip"

	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/event"
)

// PasswordChecker is the password half of sftpd's and ftpd's Authenticator.
type PasswordChecker interface {
	CheckPassword(ctx context.Context, name, password string, remote netip.Addr) (*users.User, error)
}

// PublicKeyChecker is the public-key half of sftpd's Authenticator.
type PublicKeyChecker interface {
	CheckPublicKey(ctx context.Context, name string, key ssh.PublicKey, remote netip.Addr) (*users.User, error)
}

// FailureReason is the only reason a Login Failed event gives: which check refused (unknown
// user, wrong secret) is not told, as the client is not told, and no secret is ever included.
const FailureReason = "authentication failed"

// Auth decorates an authenticator with a Login Failed event per refused attempt. It satisfies
// sftpd.Authenticator and ftpd.Authenticator.
type Auth struct {
	inner    PasswordChecker
	e        *Events
	protocol string
}

// Auth returns auth with Login Failed events under protocol. CheckPublicKey needs auth to
// implement PublicKeyChecker (users.Store does) and refuses every key otherwise.
//
// The authenticator sees only the client's IP, so client_address is the IP without port, and
// session_id is a fresh id per event unless ctx carries one (WithSession).
func (e *Events) Auth(auth PasswordChecker, protocol string) *Auth {
	return &Auth{inner: auth, e: e, protocol: protocol}
}

// CheckPassword implements the authenticators' method.
func (a *Auth) CheckPassword(ctx context.Context, name, password string, remote netip.Addr) (*users.User, error) {
	u, err := a.inner.CheckPassword(ctx, name, password, remote)
	a.check(ctx, name, remote, u, err)
	return u, err
}

var errNoPublicKeys = errors.New("public key authentication not supported")

// CheckPublicKey implements sftpd's Authenticator. A refused key is not a Login Failed event:
// SSH clients offer every key they hold until one is accepted (OpenSSH with an agent does so on
// every login), so each successful login would otherwise come with failures that mean nothing.
func (a *Auth) CheckPublicKey(ctx context.Context, name string, key ssh.PublicKey, remote netip.Addr) (*users.User, error) {
	pk, ok := a.inner.(PublicKeyChecker)
	if !ok {
		return nil, errNoPublicKeys
	}
	return pk.CheckPublicKey(ctx, name, key, remote)
}

func (a *Auth) check(ctx context.Context, name string, remote netip.Addr, u *users.User, err error) {
	if err == nil && u != nil {
		return
	}
	if ctx.Err() != nil {
		return // the login timed out or the server is stopping: not a refusal
	}
	s, ok := sessionFrom(ctx)
	if !ok {
		s.ID = "login-" + event.NewID()
	}
	if s.ClientAddr == "" && remote.IsValid() {
		s.ClientAddr = remote.String()
	}
	if s.ClientAddr == "" {
		s.ClientAddr = "unknown"
	}
	a.e.emit(event.DetailTypeLoginFailed, event.GatewayDetail{
		User: name, Protocol: a.protocol, SessionID: s.ID, ClientAddress: s.ClientAddr,
		FailureReason: FailureReason,
	})
}

// Session names the connection a login belongs to.
type Session struct {
	ID         string // as in CreateOptions.SessionID
	ClientAddr string // "ip:port"
}

type sessionKey struct{}

// WithSession returns ctx carrying s, so a front end that passes it to the authenticator gets
// Login Failed events with its session id and the client's port.
func WithSession(ctx context.Context, s Session) context.Context {
	return context.WithValue(ctx, sessionKey{}, s)
}

func sessionFrom(ctx context.Context) (Session, bool) {
	s, ok := ctx.Value(sessionKey{}).(Session)
	return s, ok && s.ID != ""
}
