package users

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
)

// ErrAuth is the one error of every failed login: unknown user, disabled user, wrong password,
// unknown key, refused address. The returned error wraps it with the reason for the server's
// log (errors.Is(err, ErrAuth)); clients must only ever be told ErrAuth's text.
var ErrAuth = errors.New("authentication failed")

// HashCost is the bcrypt cost of hashes Ferry makes (`ferry hash-password`, `ferry user`).
const HashCost = 12

// HashPassword returns the bcrypt hash of password at HashCost.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), HashCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// Store holds the users of one users file and checks logins against them. It is safe for
// concurrent use; Reload and Watch swap in a new immutable set of Users, so a session keeps the
// *User it logged in with.
type Store struct {
	path   string
	logger *slog.Logger
	cur    atomic.Pointer[snapshot]
	// bcrypt is CPU-bound: at most GOMAXPROCS comparisons run at once, the rest wait (or give up
	// with their context), so a password-guessing storm cannot starve transfers.
	bcryptSlots chan struct{}

	reloadMu     sync.Mutex
	rejectedSum  [sha256.Size]byte // content last refused, not to log it again per event
	dummyHashes  map[int][]byte    // cost -> hash of a random password; guarded by reloadMu
	dummyKeyBlob []byte
}

type snapshot struct {
	users  []*User
	byName map[string]*User
	sum    [sha256.Size]byte
	// dummyHash has the cost most users' hashes have: unknown users and users without a
	// password cost the same bcrypt work as a wrong password.
	dummyHash []byte
}

// Open loads the users file at path. logger may be nil.
func Open(path string, logger *slog.Logger) (*Store, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	s := &Store{
		path:         path,
		logger:       discard(logger).With("component", "users"),
		bcryptSlots:  make(chan struct{}, runtime.GOMAXPROCS(0)),
		dummyHashes:  map[int][]byte{},
		dummyKeyBlob: sshPub.Marshal(),
	}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path returns the users file's path.
func (s *Store) Path() string { return s.path }

// Lookup returns the user called name.
func (s *Store) Lookup(name string) (*User, bool) {
	u, ok := s.cur.Load().byName[name]
	return u, ok
}

// All returns every user, in file order.
func (s *Store) All() []*User {
	return append([]*User(nil), s.cur.Load().users...)
}

// Reload reads the users file again and, if it is valid, puts its users in force. An invalid
// file is refused (the error lists its problems as file:line: reason) and the previous users
// stay. Call it on SIGHUP; the caller logs the error.
func (s *Store) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	_, err := s.reloadLocked(true)
	return err
}

// reloadLocked loads the file unless force is false and its content is the one in force or
// the one last refused. It reports whether it tried.
func (s *Store) reloadLocked(force bool) (bool, error) {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return true, fmt.Errorf("users: %w", err)
	}
	sum := sha256.Sum256(data)
	if cur := s.cur.Load(); !force && (cur != nil && cur.sum == sum || sum == s.rejectedSum) {
		return false, nil
	}
	users, warnings, err := Parse(s.path, data)
	if err != nil {
		s.rejectedSum = sum
		return true, err
	}
	snap := &snapshot{users: users, byName: make(map[string]*User, len(users)), sum: sum}
	for _, u := range users {
		snap.byName[u.Name] = u
	}
	if snap.dummyHash, err = s.dummyHash(commonCost(users)); err != nil {
		return true, err
	}
	s.cur.Store(snap)
	s.rejectedSum = [sha256.Size]byte{}
	for _, w := range warnings {
		s.logger.Warn("users file: " + w)
	}
	s.logger.Info("users loaded", "path", s.path, "users", len(users))
	return true, nil
}

// commonCost returns the bcrypt cost most users' hashes have (the higher on a tie), or HashCost.
func commonCost(users []*User) int {
	counts := map[int]int{}
	best, bestN := HashCost, 0
	for _, u := range users {
		if u.PasswordHash == "" {
			continue
		}
		c, err := bcrypt.Cost([]byte(u.PasswordHash))
		if err != nil {
			continue
		}
		counts[c]++
		if n := counts[c]; n > bestN || n == bestN && c > best {
			best, bestN = c, n
		}
	}
	return best
}

func (s *Store) dummyHash(cost int) ([]byte, error) {
	if h, ok := s.dummyHashes[cost]; ok {
		return h, nil
	}
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	h, err := bcrypt.GenerateFromPassword(secret, cost)
	if err != nil {
		return nil, fmt.Errorf("users: dummy hash: %w", err)
	}
	s.dummyHashes[cost] = h
	return h, nil
}

func authFailed(reason string) error { return fmt.Errorf("%w: %s", ErrAuth, reason) }

// CheckPassword returns the user if password is theirs and they may log in from remote. Every
// refusal wraps ErrAuth and costs one bcrypt comparison, whether the user exists or not.
// For a user with auth "both" this checks the password only: the SSH server asks for the key
// first (see User.Auth).
func (s *Store) CheckPassword(ctx context.Context, name, password string, remote netip.Addr) (*User, error) {
	snap := s.cur.Load()
	u := snap.byName[name]
	hash := snap.dummyHash
	if u != nil && u.PasswordHash != "" {
		hash = []byte(u.PasswordHash)
	}
	select {
	case s.bcryptSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("check password: %w", ctx.Err())
	}
	match := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
	<-s.bcryptSlots
	switch {
	case u == nil:
		return nil, authFailed("unknown user")
	case u.PasswordHash == "":
		return nil, authFailed("user has no password")
	case !match:
		return nil, authFailed("wrong password")
	}
	return checkAccount(u, remote)
}

// CheckPublicKey returns the user if key is one of theirs and they may log in from remote.
// Keys are compared in constant time over their wire form; an unknown user is compared against
// a dummy key. For a user with auth "both" the password is still to be asked.
func (s *Store) CheckPublicKey(ctx context.Context, name string, key ssh.PublicKey, remote netip.Addr) (*User, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("check public key: %w", err)
	}
	u := s.cur.Load().byName[name]
	offered := key.Marshal()
	match := 0
	if u == nil || len(u.PublicKeys) == 0 {
		subtle.ConstantTimeCompare(s.dummyKeyBlob, offered)
	} else {
		for _, k := range u.PublicKeys {
			match |= subtle.ConstantTimeCompare(k.Marshal(), offered)
		}
	}
	switch {
	case u == nil:
		return nil, authFailed("unknown user")
	case match != 1:
		return nil, authFailed("key not authorized")
	}
	return checkAccount(u, remote)
}

func checkAccount(u *User, remote netip.Addr) (*User, error) {
	switch {
	case u.Disabled:
		return nil, authFailed("user disabled")
	case !u.AllowedFrom(remote):
		return nil, authFailed("address not allowed")
	}
	return u, nil
}

func discard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
