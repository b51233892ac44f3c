// Package sessions keeps the logged-in connections of every front end by user, so that an edit
// of the users file reaches the sessions already open, within the time the store takes to
// notice it (a local file at once, an S3 object at its next poll):
//
//   - a session whose user was disabled or deleted, whose password, keys or auth changed, whose
//     home moved, whose protocol or address is no longer allowed, is revoked: its connection is
//     closed, which aborts its unfinished uploads;
//   - a change of permissions alone revokes nothing: the user's storage view reads the current
//     permissions at each operation (access.Live), so it applies to the next command.
//
// The Registry subscribes to the store (users.Store.Subscribe); front ends Join at login and
// leave at logout.
package sessions

import (
	"log/slog"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygw/ferry/gateway/internal/users"
)

// Registry is the set of open sessions, by user name. Safe for concurrent use.
type Registry struct {
	lookup  func(name string) (*users.User, bool)
	log     *slog.Logger
	revoked *prometheus.CounterVec

	mu     sync.Mutex
	byUser map[string]map[*session]struct{}
}

type session struct {
	user     *users.User // as it logged in
	protocol string
	remote   netip.Addr
	revoke   func(reason string)
	once     sync.Once
}

// New returns a Registry that reads the current users with lookup (users.Store.Lookup). reg
// receives its metric (nil: not registered); logger may be nil.
func New(lookup func(name string) (*users.User, bool), logger *slog.Logger, reg prometheus.Registerer) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{
		lookup: lookup,
		log:    logger.With("component", "sessions"),
		revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sessions_revoked_total",
			Help: "Logged-in sessions closed because their user's account changed (disabled, deleted, credentials, home, protocols, addresses).",
		}, []string{"protocol"}),
		byUser: map[string]map[*session]struct{}{},
	}
	if reg != nil {
		reg.MustRegister(r.revoked)
	}
	return r
}

// Join records a session of u, logged in over protocol ("sftp", "ftp", "ftps") from remote.
// revoke closes the session's connection; it is called at most once, from the goroutine that
// reloaded the users (it must not block), when u's account no longer admits the session. Call
// leave when the session ends.
//
// A session that logged in with an account revoked meanwhile (a reload between its password
// check and Join) is revoked at once.
func (r *Registry) Join(u *users.User, protocol string, remote netip.Addr, revoke func(reason string)) (leave func()) {
	s := &session{user: u, protocol: protocol, remote: remote.Unmap(), revoke: revoke}
	r.mu.Lock()
	set := r.byUser[u.Name]
	if set == nil {
		set = map[*session]struct{}{}
		r.byUser[u.Name] = set
	}
	set[s] = struct{}{}
	r.mu.Unlock()
	// After the session is in the set: a reload that stored its users before this lookup is
	// seen here, one that stores them after finds the session in the set (Changed).
	r.check(s)
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if set := r.byUser[u.Name]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(r.byUser, u.Name)
			}
		}
	}
}

// Changed is the users.Store subscriber: it checks the open sessions of the users named.
func (r *Registry) Changed(names []string) {
	var todo []*session
	r.mu.Lock()
	for _, n := range names {
		for s := range r.byUser[n] {
			todo = append(todo, s)
		}
	}
	r.mu.Unlock()
	for _, s := range todo {
		r.check(s)
	}
}

// Open returns the number of open sessions of user name.
func (r *Registry) Open(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byUser[name])
}

// check revokes s if its user's current account no longer admits it.
func (r *Registry) check(s *session) {
	cur, ok := r.lookup(s.user.Name)
	if !ok {
		cur = nil
	}
	reason := Reason(s.user, cur, s.protocol, s.remote)
	if reason == "" {
		return
	}
	s.once.Do(func() {
		r.revoked.WithLabelValues(s.protocol).Inc()
		r.log.Info("session revoked", "user", s.user.Name, "protocol", s.protocol, "remote", s.remote.String(), "reason", reason)
		s.revoke(reason)
	})
}

// Reason says why a session that logged in as was over protocol from remote must end now that
// the account reads now (nil: deleted), or "" when it may go on.
func Reason(was, now *users.User, protocol string, remote netip.Addr) string {
	if why := users.Revoked(was, now); why != "" {
		return why
	}
	switch {
	case !now.Allows(protocol):
		return protocol + " no longer allowed"
	case !now.AllowedFrom(remote):
		return "address no longer allowed"
	}
	return ""
}
