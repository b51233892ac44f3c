package sftpd

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/users"
)

// Authenticator checks credentials. Implementations must take the same time for unknown users
// and wrong secrets (package users does); this package adds no difference of its own: every
// refusal is the same error to the client.
type Authenticator interface {
	CheckPassword(ctx context.Context, user, password string, remote netip.Addr) (*users.User, error)
	CheckPublicKey(ctx context.Context, user string, key ssh.PublicKey, remote netip.Addr) (*users.User, error)
}

// errDenied is the only thing a client learns about a refused login.
var errDenied = errors.New("ssh: access denied")

// serverVersion is the SSH identification string the server sends.
const serverVersion = "SSH-2.0-Ferry"

const methodExtension = "ferry-method"

// userKey is the ssh.Permissions.ExtraData key under which an accepting callback leaves the
// account the credential belongs to: the SSH library hands the connection the Permissions of
// the attempt that finally succeeded, and with them its user.
type userKey struct{}

// accept is what an accepting callback returns for u, logged in by method.
func accept(u *users.User, method string) *ssh.Permissions {
	return &ssh.Permissions{
		Extensions: map[string]string{methodExtension: method},
		ExtraData:  map[any]any{userKey{}: u},
	}
}

// loggedIn is the user of a connection's successful login.
func loggedIn(perms *ssh.Permissions) *users.User {
	if perms == nil {
		return nil
	}
	u, _ := perms.ExtraData[userKey{}].(*users.User)
	return u
}

// sshConfig builds the per-connection SSH server configuration; ctx bounds the login.
func (s *Server) sshConfig(ctx context.Context, remote netip.Addr, log *slog.Logger) *ssh.ServerConfig {
	// admit applies the account checks this server owns, whatever the authenticator did.
	admit := func(method, name string, u *users.User, err error) error {
		reason := ""
		switch {
		case err != nil:
			reason = err.Error()
		case u == nil:
			reason = "no user returned"
		case u.Name != name:
			reason = "authenticator returned another user"
		case u.Disabled:
			reason = "user disabled"
		case !u.AllowedFrom(remote):
			reason = "address not allowed"
		}
		if reason != "" {
			level := slog.LevelInfo
			if method == "publickey" {
				level = slog.LevelDebug // clients offer every key they have; not each is an attack
			}
			log.Log(ctx, level, "login refused", "user", name, "method", method, "reason", reason)
			return errDenied
		}
		return nil
	}
	password := func(meta ssh.ConnMetadata, pw []byte) (*users.User, error) {
		u, err := s.deps.Auth.CheckPassword(ctx, meta.User(), string(pw), remote)
		if err := admit("password", meta.User(), u, err); err != nil {
			return nil, err
		}
		return u, nil
	}
	cfg := &ssh.ServerConfig{
		Config:                  s.algos.config,
		PublicKeyAuthAlgorithms: s.algos.pubKeyAuth,
		MaxAuthTries:            6,
		ServerVersion:           serverVersion,
		PasswordCallback: func(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			u, err := password(meta, pw)
			if err != nil {
				return nil, err
			}
			if u.Auth == users.AuthBoth {
				log.Info("login refused", "user", u.Name, "method", "password", "reason", "key required before password")
				return nil, errDenied
			}
			return accept(u, "password"), nil
		},
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			u, err := s.deps.Auth.CheckPublicKey(ctx, meta.User(), key, remote)
			if err := admit("publickey", meta.User(), u, err); err != nil {
				return nil, err
			}
			if u.Auth != users.AuthBoth {
				return accept(u, "publickey"), nil
			}
			// The SSH library calls this for an offered key before the client proves it holds
			// it; the partial success only counts once the signature verified.
			return nil, &ssh.PartialSuccessError{Next: ssh.ServerAuthCallbacks{
				PasswordCallback: func(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
					u2, err := password(meta, pw)
					if err != nil {
						return nil, err
					}
					return accept(u2, "publickey+password"), nil
				},
			}}
		},
	}
	if s.cfg.Banner != "" {
		banner := s.cfg.Banner
		cfg.BannerCallback = func(ssh.ConnMetadata) string { return banner }
	}
	for _, k := range s.algos.hostKeys {
		cfg.AddHostKey(k)
	}
	return cfg
}
