// Package defender protects the login path that SSH and FTP share, before any password is
// checked. One Defender serves every front end of a gateway, so an address is judged by all it
// does, whatever the protocol.
//
//   - Admission (Admit, at accept): a connection is closed at once when its address already
//     holds MaxPerIP connections or MaxUnauthenticatedPerIP not logged in yet, or when
//     MaxUnauthenticated connections in all are not logged in yet, or when its address is
//     banned. One address cannot take the slots real users need, and idle connections that
//     never log in are bounded in number as the login timeouts bound them in time.
//   - Brute force: every refused password adds LoginFailedScore to its address's score, and
//     every connection that ends without logging in or trying a password adds NoLoginScore.
//     An address whose score reaches Threshold within Window is banned for BanTime, doubled for
//     each ban it had before (remembered until MaxBanTime after the last one ended), at most
//     MaxBanTime. A ban closes the address's connections that have not logged in, and its
//     login attempts are refused before any bcrypt work (Auth).
//   - Fairness (Auth): an address has one password check at a time. bcrypt is slow on purpose
//     and the user store runs only as many checks as there are cores, so without this one
//     address's parallel guesses would queue every other user's login behind them.
//
// Addresses in Safelist are never banned nor limited per address (a partner's NAT, the load
// balancer's own health checks); they still count towards MaxUnauthenticated.
//
// An address is an IPv4 address or an IPv6 /64: one host is given a whole /64, so counting
// IPv6 addresses one by one would limit and ban nothing.
//
// The client's address is the connection's RemoteAddr: behind a PROXY-protocol load balancer
// it is the client's own (package proxyproto), not the load balancer's.
package defender

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for zero Config fields.
const (
	DefaultThreshold        = 20
	DefaultWindow           = 10 * time.Minute
	DefaultLoginFailedScore = 4
	DefaultNoLoginScore     = 1
	DefaultBanTime          = 15 * time.Minute
	DefaultMaxBanTime       = 24 * time.Hour
	DefaultMaxTracked       = 100_000
)

// Config tunes a Defender. A zero limit is no limit.
type Config struct {
	// MaxPerIP bounds the connections from one address, logged in or not.
	MaxPerIP int
	// MaxUnauthenticatedPerIP bounds the connections from one address not logged in yet.
	MaxUnauthenticatedPerIP int
	// MaxUnauthenticated bounds the connections not logged in yet, from every address.
	MaxUnauthenticated int

	// Disabled turns bans off (and scores are not kept); the limits above still apply.
	Disabled bool
	// Threshold is the score within Window at which an address is banned.
	Threshold int
	Window    time.Duration
	// LoginFailedScore is added per refused password; NoLoginScore per connection that ends
	// without logging in or having a password refused (a scanner, a silent connection). Unlike
	// the other fields, 0 is not a default: an offence scored 0 does not count
	// (DefaultLoginFailedScore and DefaultNoLoginScore are the usual values).
	LoginFailedScore, NoLoginScore int
	// BanTime is the first ban's length; each earlier ban still remembered doubles it, up to
	// MaxBanTime. A ban is remembered until MaxBanTime after it ended.
	BanTime, MaxBanTime time.Duration
	// Safelist are addresses never banned nor limited per address.
	Safelist []netip.Prefix
	// MaxTracked bounds the addresses whose score or past bans are kept (memory under an attack
	// from many addresses); beyond it an address without a ban in force is forgotten.
	MaxTracked int

	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer receives the metrics (nil: not registered).
	Registerer prometheus.Registerer
	// OnBan is called for every ban, outside the Defender's lock; it must not block.
	OnBan func(Ban)
	// Refused is called for every connection refused at accept, with the protocol and the
	// reason (banned, per_ip, unauthenticated_per_ip, unauthenticated), outside the lock; the
	// gateway counts every refusal, whoever refuses, in one series. Nil: not counted.
	Refused func(protocol, reason string)
}

// Ban describes an address being banned.
type Ban struct {
	Addr     string    // the address, or the IPv6 /64
	Protocol string    // the protocol of the offence that reached the threshold
	User     string    // the user name last tried from it, if that offence was a login
	Score    int       // its score within the window
	Until    time.Time // when the ban ends
	Count    int       // the bans of this address remembered, this one included
	Reason   string    // what reached the threshold, for people
}

// Refusals at accept. Each wraps ErrRefused.
var (
	ErrRefused                   = errors.New("connection refused")
	ErrBanned                    = fmt.Errorf("%w: address banned", ErrRefused)
	ErrTooManyFromAddress        = fmt.Errorf("%w: too many connections from this address", ErrRefused)
	ErrTooManyUnauthenticatedOne = fmt.Errorf("%w: too many connections not logged in from this address", ErrRefused)
	ErrTooManyUnauthenticated    = fmt.Errorf("%w: too many connections not logged in", ErrRefused)
)

// Offence kinds, as metric labels.
const (
	offenceLoginFailed = "login_failed"
	offenceNoLogin     = "no_login"
)

// Defender admits connections and bans addresses; see the package doc. Safe for concurrent use.
type Defender struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	mu        sync.Mutex
	hosts     map[netip.Prefix]*host
	preauth   int       // connections not logged in yet, every address
	lastSweep time.Time // when forgotten hosts were last dropped
}

// host is what the Defender knows about one address.
type host struct {
	conns, preauth int              // open connections; of which not logged in
	waiting        map[*Ticket]bool // connections not logged in, closed by a ban
	offences       []offence        // within the window
	bannedUntil    time.Time
	bans           int           // bans remembered
	checks         int           // password checks holding or waiting for token
	token          chan struct{} // one password check at a time
	warned         time.Time     // last refusal logged at warn level
}

type offence struct {
	at     time.Time
	points int
}

// New returns a Defender with cfg's zero fields set to their defaults.
func New(cfg Config) (*Defender, error) {
	if cfg.MaxPerIP < 0 || cfg.MaxUnauthenticatedPerIP < 0 || cfg.MaxUnauthenticated < 0 || cfg.Threshold < 0 ||
		cfg.Window < 0 || cfg.LoginFailedScore < 0 || cfg.NoLoginScore < 0 || cfg.BanTime < 0 || cfg.MaxBanTime < 0 || cfg.MaxTracked < 0 {
		return nil, errors.New("defender: negative limit, score or time")
	}
	setDefault(&cfg.Threshold, DefaultThreshold)
	setDefault(&cfg.Window, DefaultWindow)
	setDefault(&cfg.BanTime, DefaultBanTime)
	setDefault(&cfg.MaxBanTime, DefaultMaxBanTime)
	setDefault(&cfg.MaxTracked, DefaultMaxTracked)
	if cfg.MaxBanTime < cfg.BanTime {
		return nil, fmt.Errorf("defender: max ban time %s is shorter than the ban time %s", cfg.MaxBanTime, cfg.BanTime)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Defender{cfg: cfg, log: log.With("component", "defender"), hosts: map[netip.Prefix]*host{}}
	d.m = newMetrics(d, cfg.Registerer)
	return d, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// keyOf is the address a client is judged by: IPv4 itself, IPv6 its /64.
func keyOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

func keyString(k netip.Prefix) string {
	if k.Addr().Is4() {
		return k.Addr().String()
	}
	return k.String()
}

func (d *Defender) safe(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range d.cfg.Safelist {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Banned reports whether connections and logins from a are refused now.
func (d *Defender) Banned(a netip.Addr) bool {
	if d.cfg.Disabled || d.safe(a) {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.hosts[keyOf(a)]
	return h != nil && h.banned(time.Now())
}

func (h *host) banned(now time.Time) bool { return now.Before(h.bannedUntil) }

// hostLocked returns the host of k, creating it if needed. A host for a connection or a
// password check is always made (always); one only to be scored is not when the table is full of
// hosts that must stay (nil): the table's bound beats one more score.
func (d *Defender) hostLocked(k netip.Prefix, now time.Time, always bool) *host {
	d.sweepLocked(now)
	if h := d.hosts[k]; h != nil {
		return h
	}
	if len(d.hosts) >= d.cfg.MaxTracked && !d.evictLocked(now) && !always {
		return nil
	}
	h := &host{waiting: map[*Ticket]bool{}, token: make(chan struct{}, 1)}
	d.hosts[k] = h
	return h
}

// forgettable reports whether nothing needs h any more: no connection, no check, no ban in force, no
// offence in the window, no ban remembered.
func (d *Defender) forgettable(h *host, now time.Time) bool {
	return h.conns == 0 && h.checks == 0 && !h.banned(now) && len(d.liveOffences(h, now)) == 0 &&
		(h.bans == 0 || now.After(h.bannedUntil.Add(d.cfg.MaxBanTime)))
}

// sweepLocked drops forgettable hosts, at most once per minute (or Window when shorter).
func (d *Defender) sweepLocked(now time.Time) {
	every := min(time.Minute, d.cfg.Window)
	if now.Sub(d.lastSweep) < every {
		return
	}
	d.lastSweep = now
	for k, h := range d.hosts {
		if d.forgettable(h, now) {
			delete(d.hosts, k)
		}
	}
}

// evictLocked makes room in a full table by forgetting one host that has no connection, no
// check and no ban in force (its score or past bans are lost: the price of bounded memory). It
// looks at a few hosts in Go's random map order, so the cost stays constant.
func (d *Defender) evictLocked(now time.Time) bool {
	tries := 0
	for k, h := range d.hosts {
		if h.conns == 0 && h.checks == 0 && !h.banned(now) {
			delete(d.hosts, k)
			return true
		}
		if tries++; tries >= 64 {
			break
		}
	}
	return false
}

// liveOffences drops h's offences older than the window and returns the rest.
func (d *Defender) liveOffences(h *host, now time.Time) []offence {
	cut := 0
	for cut < len(h.offences) && now.Sub(h.offences[cut].at) >= d.cfg.Window {
		cut++
	}
	if cut > 0 {
		h.offences = append(h.offences[:0], h.offences[cut:]...)
	}
	return h.offences
}

// offend adds kind's points to a's score and bans it when the threshold is reached.
func (d *Defender) offend(a netip.Addr, protocol, kind, user string) {
	if d.cfg.Disabled || d.safe(a) {
		return
	}
	points := d.cfg.LoginFailedScore
	if kind == offenceNoLogin {
		points = d.cfg.NoLoginScore
	}
	if points == 0 {
		return
	}
	now := time.Now()
	k := keyOf(a)
	d.mu.Lock()
	h := d.hostLocked(k, now, false)
	if h == nil || h.banned(now) {
		d.mu.Unlock()
		return
	}
	d.m.score.WithLabelValues(protocol, kind).Add(float64(points))
	h.offences = append(d.liveOffences(h, now), offence{at: now, points: points})
	score := 0
	for _, o := range h.offences {
		score += o.points
	}
	if score < d.cfg.Threshold {
		d.mu.Unlock()
		return
	}
	if now.After(h.bannedUntil.Add(d.cfg.MaxBanTime)) {
		h.bans = 0 // the last ban is forgotten
	}
	length := d.cfg.BanTime
	for range h.bans {
		if length >= d.cfg.MaxBanTime/2 {
			length = d.cfg.MaxBanTime
			break
		}
		length *= 2
	}
	length = min(length, d.cfg.MaxBanTime)
	h.bans++
	h.bannedUntil = now.Add(length)
	h.offences = nil
	var closers []func()
	for t := range h.waiting {
		t.bannedOut = true
		if t.close != nil {
			closers = append(closers, t.close)
		}
	}
	ban := Ban{Addr: keyString(k), Protocol: protocol, Score: score, Until: h.bannedUntil, Count: h.bans,
		Reason: fmt.Sprintf("score %d within %s reached %d (last: %s)", score, d.cfg.Window, d.cfg.Threshold, describe(kind))}
	if kind == offenceLoginFailed {
		ban.User = user
	}
	d.m.bans.WithLabelValues(protocol).Inc()
	d.mu.Unlock()

	d.log.Warn("address banned", "remote", ban.Addr, "protocol", protocol, "score", score, "ban", length,
		"until", ban.Until.UTC().Format(time.RFC3339), "bans", ban.Count, "user", ban.User, "closed", len(closers))
	for _, c := range closers {
		c()
	}
	if d.cfg.OnBan != nil {
		d.cfg.OnBan(ban)
	}
}

func describe(kind string) string {
	if kind == offenceLoginFailed {
		return "a refused password"
	}
	return "a connection that did not log in"
}
