package defender

import (
	"context"
	"net/netip"
	"time"
)

// Ticket is one admitted connection. The server calls LoggedIn once the client authenticated
// and Close when the connection ended (both idempotent).
type Ticket struct {
	d        *Defender
	addr     netip.Addr
	key      netip.Prefix
	protocol string
	close    func() // closes the connection: a ban ends it
	safe     bool

	// Guarded by d.mu.
	loggedIn, closed bool
	tried            bool // a password was refused on it: its end is no further offence
	bannedOut        bool // closed by a ban: its end is no further offence
}

// Admit decides at accept whether a connection from remote may go on (nil error) and returns
// its ticket. closeConn closes the connection; the Defender calls it when remote is banned before
// the connection logged in. A refusal wraps ErrRefused and says which limit refused it; the
// server closes the connection at once (FTP may first send a 421).
func (d *Defender) Admit(remote netip.Addr, protocol string, closeConn func()) (*Ticket, error) {
	now := time.Now()
	remote = remote.Unmap()
	k := keyOf(remote)
	safe := d.safe(remote)
	d.mu.Lock()
	h := d.hostLocked(k, now, true)
	var err error
	reason := ""
	switch {
	case !safe && !d.cfg.Disabled && h.banned(now):
		err, reason = ErrBanned, "banned"
	case !safe && d.cfg.MaxPerIP > 0 && h.conns >= d.cfg.MaxPerIP:
		err, reason = ErrTooManyFromAddress, "per_ip"
	case !safe && d.cfg.MaxUnauthenticatedPerIP > 0 && h.preauth >= d.cfg.MaxUnauthenticatedPerIP:
		err, reason = ErrTooManyUnauthenticatedOne, "unauthenticated_per_ip"
	case d.cfg.MaxUnauthenticated > 0 && d.preauth >= d.cfg.MaxUnauthenticated:
		err, reason = ErrTooManyUnauthenticated, "unauthenticated"
	}
	if err != nil {
		warn := now.Sub(h.warned) >= time.Minute
		if warn {
			h.warned = now
		}
		conns, preauth, total := h.conns, h.preauth, d.preauth
		d.mu.Unlock()
		if d.cfg.Refused != nil {
			d.cfg.Refused(protocol, reason)
		}
		level := d.log.Debug
		if warn && reason != "banned" { // a ban was logged when it began
			level = d.log.Warn
		}
		level("connection refused", "remote", remote.String(), "protocol", protocol, "reason", err.Error(),
			"from_address", conns, "not_logged_in_from_address", preauth, "not_logged_in", total)
		return nil, err
	}
	t := &Ticket{d: d, addr: remote, key: k, protocol: protocol, close: closeConn, safe: safe}
	h.conns++
	h.preauth++
	h.waiting[t] = true
	d.preauth++
	d.mu.Unlock()
	return t, nil
}

// LoggedIn records that the connection authenticated: it no longer counts as not logged in
// and a ban no longer closes it.
func (t *Ticket) LoggedIn() {
	if t == nil {
		return
	}
	d := t.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if t.loggedIn || t.closed {
		return
	}
	t.loggedIn = true
	d.leaveLocked(t)
}

// leaveLocked takes t off the connections not logged in yet.
func (d *Defender) leaveLocked(t *Ticket) {
	d.preauth--
	if h := d.hosts[t.key]; h != nil {
		h.preauth--
		delete(h.waiting, t)
	}
}

// Close records the connection's end. One that never logged in, had no password refused and
// was not closed by a ban is an offence of its own (NoLoginScore): a scanner, or a connection
// held open to take a slot until the login timeout closed it.
func (t *Ticket) Close() {
	if t == nil {
		return
	}
	d := t.d
	d.mu.Lock()
	if t.closed {
		d.mu.Unlock()
		return
	}
	t.closed = true
	if !t.loggedIn {
		d.leaveLocked(t)
	}
	if h := d.hosts[t.key]; h != nil {
		h.conns--
	}
	offends := !t.loggedIn && !t.tried && !t.bannedOut
	d.mu.Unlock()
	if offends {
		d.offend(t.addr, t.protocol, offenceNoLogin, "")
	}
}

// markTried records on the ticket in ctx, if any, that a password was refused on it.
func (d *Defender) markTried(ctx context.Context) {
	t, ok := ctx.Value(ticketKey{}).(*Ticket)
	if !ok || t == nil || t.d != d {
		return
	}
	d.mu.Lock()
	t.tried = true
	d.mu.Unlock()
}

type ticketKey struct{}

// WithTicket returns ctx carrying t: a server passes it to the authenticator (Auth), so that a
// connection whose password was refused is not counted again when it ends.
func WithTicket(ctx context.Context, t *Ticket) context.Context {
	if t == nil {
		return ctx
	}
	return context.WithValue(ctx, ticketKey{}, t)
}
