package users

import (
	"bytes"
	"slices"
	"sync"
)

// Subscribers of a Store learn which users a reload changed, so that open sessions can follow
// (package sessions disconnects revoked users). A reload swaps the whole set of users at once;
// the subscribers are called after the swap, so a Lookup from a subscriber sees the new users.

// subscribers is the set of functions a Store calls after a reload that changed users.
type subscribers struct {
	mu   sync.Mutex
	next int
	fns  map[int]func(changed []string)
}

// Subscribe calls fn after every reload that added, removed or edited users, with their names
// (in file order, removed ones last). fn runs while the store reloads: it must not block and must
// not call Reload. cancel stops the calls.
func (s *Store) Subscribe(fn func(changed []string)) (cancel func()) {
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	if s.subs.fns == nil {
		s.subs.fns = map[int]func([]string){}
	}
	id := s.subs.next
	s.subs.next++
	s.subs.fns[id] = fn
	return func() {
		s.subs.mu.Lock()
		defer s.subs.mu.Unlock()
		delete(s.subs.fns, id)
	}
}

// notify tells the subscribers what changed between old and cur (called with reloadMu held).
func (s *Store) notify(old, cur *snapshot) {
	changed := changedUsers(old, cur)
	if len(changed) == 0 {
		return
	}
	s.subs.mu.Lock()
	fns := make([]func([]string), 0, len(s.subs.fns))
	for _, fn := range s.subs.fns {
		fns = append(fns, fn)
	}
	s.subs.mu.Unlock()
	for _, fn := range fns {
		fn(slices.Clone(changed))
	}
}

func changedUsers(old, cur *snapshot) []string {
	var changed []string
	var before map[string]*User
	if old != nil {
		before = old.byName
	}
	for _, u := range cur.users {
		if was, ok := before[u.Name]; !ok || !sameUser(was, u) {
			changed = append(changed, u.Name)
		}
	}
	if old != nil {
		for _, u := range old.users {
			if _, ok := cur.byName[u.Name]; !ok {
				changed = append(changed, u.Name)
			}
		}
	}
	return changed
}

// sameUser reports whether a and b are the same account with the same rights.
func sameUser(a, b *User) bool {
	return a.Disabled == b.Disabled && sameCredentials(a, b) && a.Permissions == b.Permissions &&
		a.Protocols == b.Protocols && slices.Equal(a.AllowedCIDRs, b.AllowedCIDRs)
}

// sameCredentials reports whether a and b log in the same way into the same home.
func sameCredentials(a, b *User) bool {
	return a.PasswordHash == b.PasswordHash && sameKeys(a, b) && a.Auth == b.Auth &&
		a.FTPPasswordOnly == b.FTPPasswordOnly && a.Bucket == b.Bucket && a.Home == b.Home
}

// Revoked says why a session that logged in as was must end now that the account reads now
// (nil: deleted), or "" when it may go on: a disabled or deleted user, changed credentials
// (password, keys, auth), or a home that moved. A change of permissions alone ends nothing: it
// applies to the session's next operation. What depends on the session itself (its protocol,
// its address) is for the caller to check with Allows and AllowedFrom.
func Revoked(was, now *User) string {
	switch {
	case now == nil:
		return "user deleted"
	case now.Disabled:
		return "user disabled"
	case sameCredentials(was, now):
		return ""
	case was.PasswordHash != now.PasswordHash:
		return "password changed"
	case !sameKeys(was, now):
		return "public keys changed"
	case was.Auth != now.Auth || was.FTPPasswordOnly != now.FTPPasswordOnly:
		return "authentication changed"
	}
	return "home changed"
}

func sameKeys(a, b *User) bool {
	if len(a.PublicKeys) != len(b.PublicKeys) {
		return false
	}
	for i := range a.PublicKeys {
		if !bytes.Equal(a.PublicKeys[i].Marshal(), b.PublicKeys[i].Marshal()) {
			return false
		}
	}
	return true
}
