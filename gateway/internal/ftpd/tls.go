package ftpd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"sync"
	"time"
)

// aeadSuites are the TLS 1.2 suites FTPS accepts: ECDHE key exchange (forward secrecy) with an
// AEAD cipher. crypto/tls's defaults still include the CBC suites with SHA-1 MACs, which are open
// to padding-oracle and Lucky13-style attacks. TLS 1.3 (preferred: crypto/tls negotiates the
// highest version both sides speak) has only AEAD suites and is not configurable.
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// loadTLS builds the one tls.Config used for control and data connections. One Config matters:
// crypto/tls keeps its session-ticket keys per Config, so a data connection can resume the
// control connection's session (FileZilla and curl ask for it). Resumption is accepted, never
// required.
func loadTLS(cfg TLSConfig, publicHost string, log *slog.Logger) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: aeadSuites}
	if cfg.CertPEM != "" || cfg.KeyPEM != "" {
		cert, err := pemCertificate(cfg)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
		return tc, nil
	}
	if cfg.CertFile != "" && cfg.KeyFile != "" {
		r := &certReloader{certFile: cfg.CertFile, keyFile: cfg.KeyFile, log: log}
		if _, err := r.load(); err != nil {
			return nil, err
		}
		tc.GetCertificate = r.get
		return tc, nil
	}
	cert, err := selfSigned(publicHost)
	if err != nil {
		return nil, fmt.Errorf("ftpd: generate self-signed certificate: %w", err)
	}
	log.Warn("FTPS uses a self-signed certificate generated in memory (dev_self_signed): clients cannot verify it and it changes at every start")
	tc.Certificates = []tls.Certificate{cert}
	return tc, nil
}

func (c TLSConfig) hasCert() bool {
	return c.CertFile != "" && c.KeyFile != "" || c.CertPEM != "" && c.KeyPEM != ""
}

// pemCertificate parses the certificate given as PEM text. Its errors (crypto/tls's) never
// quote the text: the key is a secret.
func pemCertificate(cfg TLSConfig) (tls.Certificate, error) {
	cert, err := tls.X509KeyPair([]byte(cfg.CertPEM), []byte(cfg.KeyPEM))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ftpd: TLS certificate from cert_pem and key_pem: %w", err)
	}
	return cert, nil
}

// CheckTLS loads the certificate TLS mode and cfg name, as New would, without serving (for
// `ferry check`). Nothing to load (mode none, or only dev_self_signed) is no problem.
func CheckTLS(mode string, cfg TLSConfig) error {
	switch {
	case mode == TLSNone:
		return nil
	case cfg.CertPEM != "" || cfg.KeyPEM != "":
		_, err := pemCertificate(cfg)
		return err
	case cfg.CertFile != "" && cfg.KeyFile != "":
		if _, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile); err != nil {
			return fmt.Errorf("ftpd: load TLS certificate: %w", err)
		}
	}
	return nil
}

// certReloader serves the certificate from files and reloads it when they change (a renewed
// certificate needs no restart). A failed reload keeps the previous certificate.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

func (r *certReloader) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("ftpd: load TLS certificate: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cert = &cert
	r.modTime = r.filesModTime()
	r.checked = time.Now()
	return &cert, nil
}

func (r *certReloader) filesModTime() time.Time {
	var latest time.Time
	for _, f := range []string{r.certFile, r.keyFile} {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(latest) {
			latest = fi.ModTime()
		}
	}
	return latest
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	cert := r.cert
	stale := time.Since(r.checked) > 10*time.Second && r.filesModTime().After(r.modTime)
	if time.Since(r.checked) > 10*time.Second {
		r.checked = time.Now()
	}
	r.mu.Unlock()
	if stale {
		if c, err := r.load(); err != nil {
			r.log.Error("TLS certificate reload failed; keeping the previous one", "err", err)
		} else {
			r.log.Info("TLS certificate reloaded", "cert_file", r.certFile)
			cert = c
		}
	}
	return cert, nil
}

// selfSigned makes an ECDSA P-256 certificate for localhost, the loopback addresses and host.
func selfSigned(host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "ferry-dev", Organization: []string{"Ferry (self-signed, development only)"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host != "" {
		if ip := net.ParseIP(host); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
