// Package hostkeys loads (and on first start, generates and persists) the SSH server's host keys.
// A host key must survive restarts and be shared by replicas, or every client refuses to connect
// ("REMOTE HOST IDENTIFICATION HAS CHANGED"); so keys are files or PEM text, never ephemeral.
package hostkeys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Config says where host keys come from.
type Config struct {
	// Paths are private key files (OpenSSH or PKCS#8/PKCS#1/SEC1 PEM). A missing file is generated
	// when Generate is set, with the key type taken from the file name ("ed25519", "rsa", "ecdsa").
	Paths    []string
	Generate bool
	// PEM holds zero or more PEM-encoded private keys, e.g. from an environment variable, so that
	// several replicas present the same identity.
	PEM string
}

// Load returns the configured host keys, generating missing files when allowed. It fails when
// no key results, or when any configured key cannot be read (naming the file).
func Load(cfg Config, logger *slog.Logger) ([]ssh.Signer, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var signers []ssh.Signer
	for _, p := range cfg.Paths {
		s, err := loadOrGenerate(p, cfg.Generate, logger)
		if err != nil {
			return nil, err
		}
		signers = append(signers, s)
	}
	if strings.TrimSpace(cfg.PEM) != "" {
		s, err := parsePEMs([]byte(cfg.PEM))
		if err != nil {
			return nil, fmt.Errorf("host keys from PEM text: %w", err)
		}
		signers = append(signers, s...)
	}
	if len(signers) == 0 {
		return nil, errors.New("host keys: none configured (set paths, generate or PEM)")
	}
	for _, s := range signers {
		logger.Info("host key loaded", "type", s.PublicKey().Type(), "fingerprint", ssh.FingerprintSHA256(s.PublicKey()))
	}
	return signers, nil
}

func loadOrGenerate(path string, generate bool, logger *slog.Logger) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		s, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("host key %s: %w", path, err)
		}
		return s, nil
	case !errors.Is(err, fs.ErrNotExist) || !generate:
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	key, err := generateFor(path)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(key, "ferry host key")
	if err != nil {
		return nil, fmt.Errorf("host key %s: marshal: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	// O_EXCL: when two processes race to generate, one fails instead of both overwriting.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("host key %s: write: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("host key %s: write: %w", path, err)
	}
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	logger.Info("host key generated", "path", path, "type", s.PublicKey().Type())
	return s, nil
}

// generateFor makes a key of the type named in the file's base name.
func generateFor(path string) (crypto.Signer, error) {
	base := strings.ToLower(filepath.Base(path))
	switch {
	case strings.Contains(base, "ed25519"):
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case strings.Contains(base, "ecdsa"):
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case strings.Contains(base, "rsa"):
		return rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, fmt.Errorf("host key %s: cannot tell the key type to generate from the name (want ed25519, rsa or ecdsa in it)", path)
	}
}

// parsePEMs parses every PEM block in data as a private key.
func parsePEMs(data []byte) ([]ssh.Signer, error) {
	var out []ssh.Signer
	for i := 1; ; i++ {
		block, rest := pem.Decode(data)
		if block == nil {
			if strings.TrimSpace(string(data)) != "" {
				return nil, fmt.Errorf("key %d: not PEM", i)
			}
			return out, nil
		}
		s, err := ssh.ParsePrivateKey(pem.EncodeToMemory(block))
		if err != nil {
			return nil, fmt.Errorf("key %d (%s): %w", i, block.Type, err)
		}
		out = append(out, s)
		data = rest
	}
}
