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
	"runtime"
	"sync"
	"sync/atomic"
	"time"

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
	src    Source
	opts   Options
	logger *slog.Logger
	cur    atomic.Pointer[snapshot]
	// bcrypt is CPU-bound: at most GOMAXPROCS comparisons run at once, the rest wait (or give up
	// with their context), so a password-guessing storm cannot starve transfers.
	bcryptSlots chan struct{}

	reloadMu        sync.Mutex
	rejectedSum     [sha256.Size]byte // content last refused, not to log it again per event
	rejectedVersion string            // its version, not to fetch it again per poll
	loadErr         error             // why no users are loaded yet (Options.AllowUnloaded); guarded by reloadMu
	dummyHashes     map[int][]byte    // cost -> hash of a random password; guarded by reloadMu
	dummyKeyBlob    []byte

	subs subscribers // told of every reload that changed users
}

type snapshot struct {
	users   []*User
	byName  map[string]*User
	byS3Key map[string]*User // access key id -> its user
	sum     [sha256.Size]byte
	version string // the source's version of the content (an S3 ETag)
	loaded  bool   // false only for the empty set in force before a first successful load
	// dummyHash has the cost most users' hashes have: unknown users and users without a
	// password cost the same bcrypt work as a wrong password.
	dummyHash []byte
}

// Options tune a Store.
type Options struct {
	// Logger defaults to discarding.
	Logger *slog.Logger
	// PollInterval is how often Watch asks an S3 users file for its ETag (default
	// DefaultPollInterval). A local file is watched for changes instead.
	PollInterval time.Duration
	// AllowUnloaded starts the store even when the file cannot be read or is invalid: nobody can
	// log in, Loaded says why, and Watch keeps trying. For a users file on S3, which a replica
	// may find briefly unreachable (or not yet written) when it starts; the gateway then reports
	// itself not ready instead of exiting.
	AllowUnloaded bool
}

// DefaultPollInterval is how often an S3 users file is checked for a change.
const DefaultPollInterval = 30 * time.Second

// Open loads the local users file at path. logger may be nil.
func Open(path string, logger *slog.Logger) (*Store, error) {
	return OpenSource(context.Background(), LocalFile(path), Options{Logger: logger})
}

// OpenSource loads the users file kept in src. Unless opts.AllowUnloaded, a file that cannot
// be read or is invalid is an error (listing its problems as file:line: reason).
func OpenSource(ctx context.Context, src Source, opts Options) (*Store, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	s := &Store{
		src:          src,
		opts:         opts,
		logger:       discard(opts.Logger).With("component", "users"),
		bcryptSlots:  make(chan struct{}, runtime.GOMAXPROCS(0)),
		dummyHashes:  map[int][]byte{},
		dummyKeyBlob: sshPub.Marshal(),
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if _, err := s.reloadLocked(ctx, true); err != nil {
		if !opts.AllowUnloaded {
			return nil, err
		}
		// No users: every login is refused, at the cost of a real one.
		dummy, derr := s.dummyHash(HashCost)
		if derr != nil {
			return nil, derr
		}
		s.cur.Store(&snapshot{byName: map[string]*User{}, dummyHash: dummy})
		s.loadErr = err
		s.logger.Error("users file not loaded; nobody can log in until it is", "file", src.String(), "err", err)
	}
	return s, nil
}

// Path returns the users file's name: its path or s3:// URL.
func (s *Store) Path() string { return s.src.String() }

// Loaded returns nil once users are in force, else why none are (see Options.AllowUnloaded).
func (s *Store) Loaded() error {
	if s.cur.Load().loaded {
		return nil
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.loadErr == nil {
		return errors.New("users file not loaded yet")
	}
	return s.loadErr
}

// Lookup returns the user called name.
func (s *Store) Lookup(name string) (*User, bool) {
	u, ok := s.cur.Load().byName[name]
	return u, ok
}

// LookupS3Key returns the user whose S3 access key id is, with that key.
func (s *Store) LookupS3Key(id string) (*User, S3Key, bool) {
	u, ok := s.cur.Load().byS3Key[id]
	if !ok {
		return nil, S3Key{}, false
	}
	for _, k := range u.S3Keys {
		if k.ID == id {
			return u, k, true
		}
	}
	return nil, S3Key{}, false
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
	_, err := s.reloadLocked(context.Background(), true)
	return err
}

// reloadLocked loads the file unless force is false and its content is the one in force or
// the one last refused. It reports whether it tried.
func (s *Store) reloadLocked(ctx context.Context, force bool) (bool, error) {
	c, err := s.src.read(ctx)
	if err != nil {
		s.noteLoadErr(err)
		return true, err
	}
	sum := sha256.Sum256(c.data)
	if cur := s.cur.Load(); !force && cur != nil && cur.loaded && cur.sum == sum {
		if cur.version != c.version { // same content written again: remember its new version
			again := *cur
			again.version = c.version
			s.cur.Store(&again)
		}
		return false, nil
	}
	if !force && sum == s.rejectedSum {
		s.rejectedVersion = c.version
		return false, nil
	}
	name := s.src.String()
	users, warnings, err := Parse(name, c.data)
	if err != nil {
		s.rejectedSum, s.rejectedVersion = sum, c.version
		s.noteLoadErr(err)
		return true, err
	}
	snap := &snapshot{users: users, byName: make(map[string]*User, len(users)), byS3Key: map[string]*User{}, sum: sum, version: c.version, loaded: true}
	for _, u := range users {
		snap.byName[u.Name] = u
		for _, k := range u.S3Keys {
			snap.byS3Key[k.ID] = u
		}
	}
	if snap.dummyHash, err = s.dummyHash(commonCost(users)); err != nil {
		return true, err
	}
	old := s.cur.Load()
	s.cur.Store(snap)
	s.notify(old, snap)
	s.rejectedSum, s.rejectedVersion, s.loadErr = [sha256.Size]byte{}, "", nil
	for _, w := range warnings {
		s.logger.Warn("users file: " + w)
	}
	s.logger.Info("users loaded", "path", name, "users", len(users))
	return true, nil
}

// noteLoadErr records why no users are in force yet (Loaded reports it); once users are loaded a
// failed reload changes nothing. Call with reloadMu held.
func (s *Store) noteLoadErr(err error) {
	if cur := s.cur.Load(); cur == nil || !cur.loaded {
		s.loadErr = err
	}
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

// ForProtocol returns the store's login checks for one front end ("sftp", "ftp"): a user that
// protocol may not serve (User.Allows) is refused like any other failed login, after the same
// work, and with the same error.
func (s *Store) ForProtocol(protocol string) *ProtocolAuth {
	return &ProtocolAuth{s: s, protocol: protocol}
}

// ProtocolAuth checks logins for one protocol (see Store.ForProtocol).
type ProtocolAuth struct {
	s        *Store
	protocol string
}

// CheckPassword is Store.CheckPassword, refusing users the protocol may not serve.
func (a *ProtocolAuth) CheckPassword(ctx context.Context, name, password string, remote netip.Addr) (*User, error) {
	u, err := a.s.CheckPassword(ctx, name, password, remote)
	if err != nil {
		return nil, err
	}
	return a.admit(u)
}

// CheckPublicKey is Store.CheckPublicKey, refusing users the protocol may not serve.
func (a *ProtocolAuth) CheckPublicKey(ctx context.Context, name string, key ssh.PublicKey, remote netip.Addr) (*User, error) {
	u, err := a.s.CheckPublicKey(ctx, name, key, remote)
	if err != nil {
		return nil, err
	}
	return a.admit(u)
}

func (a *ProtocolAuth) admit(u *User) (*User, error) {
	if u.Allows(a.protocol) {
		return u, nil
	}
	why := a.protocol + " is not in the user's protocols"
	if a.protocol != ProtoSFTP {
		why = u.FTPProblem()
	}
	return nil, authFailed("protocol refused: " + why)
}
