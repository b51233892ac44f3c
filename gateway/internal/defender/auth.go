package defender

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/users"
)

// PasswordChecker checks a password (users.Store and its decorators).
type PasswordChecker interface {
	CheckPassword(ctx context.Context, name, password string, remote netip.Addr) (*users.User, error)
}

// PublicKeyChecker checks an SSH public key.
type PublicKeyChecker interface {
	CheckPublicKey(ctx context.Context, name string, key ssh.PublicKey, remote netip.Addr) (*users.User, error)
}

// Auth is an authenticator guarded by the Defender (see Defender.Auth). It satisfies sftpd's
// and ftpd's Authenticator.
type Auth struct {
	d        *Defender
	inner    PasswordChecker
	protocol string
}

// Auth returns inner guarded for protocol: a banned address is refused before inner is asked
// (no bcrypt work), an address has one password check at a time, and every password inner
// refuses (an error wrapping users.ErrAuth) adds to the address's score. Refused public keys do
// not: SSH clients offer every key they hold. CheckPublicKey needs inner to implement
// PublicKeyChecker and refuses every key otherwise.
//
// A refusal for a ban is users.ErrAuth like any other, so the client learns nothing more than
// from a wrong password; it comes faster, which tells nothing about which users exist.
func (d *Defender) Auth(inner PasswordChecker, protocol string) *Auth {
	return &Auth{d: d, inner: inner, protocol: protocol}
}

var errBannedLogin = fmt.Errorf("%w: address banned", users.ErrAuth)

// CheckPassword implements the front ends' Authenticator.
func (a *Auth) CheckPassword(ctx context.Context, name, password string, remote netip.Addr) (*users.User, error) {
	d := a.d
	if d.Banned(remote) {
		d.m.loginsRefused.WithLabelValues(a.protocol).Inc()
		return nil, errBannedLogin
	}
	release, err := d.acquire(ctx, remote)
	if err != nil {
		return nil, fmt.Errorf("check password: %w", err)
	}
	defer release()
	if d.Banned(remote) { // banned while this check waited its turn
		d.m.loginsRefused.WithLabelValues(a.protocol).Inc()
		return nil, errBannedLogin
	}
	u, err := a.inner.CheckPassword(ctx, name, password, remote)
	if err != nil && errors.Is(err, users.ErrAuth) && ctx.Err() == nil {
		d.markTried(ctx)
		d.offend(remote, a.protocol, offenceLoginFailed, name)
	}
	return u, err
}

var errNoPublicKeys = fmt.Errorf("%w: public key authentication not supported", users.ErrAuth)

// CheckPublicKey implements sftpd's Authenticator.
func (a *Auth) CheckPublicKey(ctx context.Context, name string, key ssh.PublicKey, remote netip.Addr) (*users.User, error) {
	if a.d.Banned(remote) {
		a.d.m.loginsRefused.WithLabelValues(a.protocol).Inc()
		return nil, errBannedLogin
	}
	pk, ok := a.inner.(PublicKeyChecker)
	if !ok {
		return nil, errNoPublicKeys
	}
	return pk.CheckPublicKey(ctx, name, key, remote)
}

// acquire waits for remote's turn to have a password checked (one at a time per address; none
// for a safelisted one) and returns the function that ends it.
func (d *Defender) acquire(ctx context.Context, remote netip.Addr) (release func(), err error) {
	if d.safe(remote) {
		return func() {}, nil
	}
	k := keyOf(remote)
	d.mu.Lock()
	h := d.hostLocked(k, time.Now(), true)
	h.checks++
	token := h.token
	d.mu.Unlock()
	done := func() {
		d.mu.Lock()
		h.checks--
		d.mu.Unlock()
	}
	select {
	case token <- struct{}{}:
		return func() { <-token; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}
