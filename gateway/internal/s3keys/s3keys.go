// Package s3keys makes users' S3 access keys and keeps their secrets sealed at rest.
//
// SigV4 proves possession of the secret with an HMAC the server must recompute, so the server
// needs the secret itself: a one-way hash (as for passwords) cannot work. The choice is then
// between deriving every secret from one master key (HKDF(master, key id): nothing per user is
// stored) and storing each secret encrypted under a key-encryption key. Ferry encrypts:
//
//   - A leaked master key alone is not every partner's secret. With derivation the key ids (in
//     logs, events, clients' configs) are all an attacker needs besides the master; here they
//     also need the users file.
//   - A new key-encryption key only means re-sealing the secrets (open with the old key, seal
//     with the new), the partners' keys stay; with derivation a new master changes every
//     secret at once. (No command re-seals yet.)
//   - Each sealed secret is bound to its user and key id (AES-GCM's additional data), so it
//     cannot be moved to another user's entry to borrow their home.
//
// A sealed secret reads "v1:<kek id>:<base64url(nonce ‖ ciphertext)>"; the kek id (the first 8
// hex digits of the key's SHA-256) names which key sealed it, so a wrong key is reported as such.
package s3keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the key-encryption key's size: AES-256.
const KeySize = 32

// IDPrefix starts every access key id Ferry makes (AWS's start with AKIA or ASIA).
const IDPrefix = "FRY"

// ParseKEK reads a key-encryption key written as base64 (standard or URL alphabet, padded or
// not) or hex; it must be 32 bytes, e.g. from `head -c 32 /dev/urandom | base64`.
func ParseKEK(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, dec := range []func(string) ([]byte, error){
		base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString, hex.DecodeString,
	} {
		if b, err := dec(s); err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	return nil, fmt.Errorf("not %d bytes in base64 or hex (make one with: head -c 32 /dev/urandom | base64)", KeySize)
}

// Sealer seals and opens secrets with one key-encryption key.
type Sealer struct {
	aead cipher.AEAD
	id   string
}

// NewSealer returns a sealer for kek (KeySize bytes).
func NewSealer(kek []byte) (*Sealer, error) {
	if len(kek) != KeySize {
		return nil, fmt.Errorf("s3keys: key-encryption key of %d bytes, want %d", len(kek), KeySize)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("s3keys: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("s3keys: %w", err)
	}
	sum := sha256.Sum256(kek)
	return &Sealer{aead: aead, id: hex.EncodeToString(sum[:4])}, nil
}

// KeyID names the key-encryption key in sealed secrets.
func (s *Sealer) KeyID() string { return s.id }

func binding(user, keyID string) []byte { return []byte("ferry-s3-key\x00" + user + "\x00" + keyID) }

// Seal encrypts secret for user's access key keyID.
func (s *Sealer) Seal(user, keyID, secret string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("s3keys: %w", err)
	}
	ct := s.aead.Seal(nonce, nonce, []byte(secret), binding(user, keyID))
	return "v1:" + s.id + ":" + base64.RawURLEncoding.EncodeToString(ct), nil
}

// ErrWrongKey reports a secret sealed under another key-encryption key.
var ErrWrongKey = errors.New("s3keys: sealed with another key-encryption key")

// Open decrypts the secret of user's access key keyID.
func (s *Sealer) Open(user, keyID, sealed string) (string, error) {
	kid, data, err := split(sealed)
	if err != nil {
		return "", err
	}
	if kid != s.id {
		return "", fmt.Errorf("%w (key %s; this one is %s)", ErrWrongKey, kid, s.id)
	}
	ns := s.aead.NonceSize()
	if len(data) < ns+s.aead.Overhead() {
		return "", errors.New("s3keys: sealed secret too short")
	}
	pt, err := s.aead.Open(nil, data[:ns], data[ns:], binding(user, keyID))
	if err != nil {
		return "", errors.New("s3keys: sealed secret does not open: altered, or not this user's key")
	}
	return string(pt), nil
}

// CheckSealed checks the form of a sealed secret without a key (the users file's validation).
func CheckSealed(sealed string) error {
	_, _, err := split(sealed)
	return err
}

func split(sealed string) (kid string, data []byte, err error) {
	parts := strings.Split(sealed, ":")
	if len(parts) != 3 || parts[0] != "v1" || len(parts[1]) != 8 {
		return "", nil, errors.New("s3keys: not a sealed secret (v1:<key id>:<data>, written by `ferry user s3-key add`)")
	}
	data, err = base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(data) == 0 {
		return "", nil, errors.New("s3keys: not a sealed secret: its data is not base64url")
	}
	return parts[1], data, nil
}

// New makes an access key id (FRY + 17 characters of A-Z and 2-7, 20 in all, like AWS's) and a
// secret of 40 characters (240 random bits).
func New() (id, secret string, err error) {
	b := make([]byte, 11+30)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("s3keys: %w", err)
	}
	id = IDPrefix + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:11])[:17]
	secret = base64.StdEncoding.EncodeToString(b[11:])
	return id, secret, nil
}

// CheckID checks the form of an access key id: 16 to 128 characters of A-Z and 0-9 (what AWS
// allows), so it travels in a SigV4 credential scope unchanged.
func CheckID(id string) error {
	if len(id) < 16 || len(id) > 128 {
		return fmt.Errorf("access key id %q: want 16 to 128 characters", id)
	}
	for _, r := range id {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fmt.Errorf("access key id %q: only A-Z and 0-9", id)
		}
	}
	return nil
}
