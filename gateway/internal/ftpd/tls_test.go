package ftpd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// pemCert returns a certificate for 127.0.0.1 and its key as PEM text.
func pemCert(t *testing.T) (certPEM, keyPEM string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "ferry-pem-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})), pool
}

// The certificate given as PEM text (a secret from the environment) is the one FTPS serves: a
// client that trusts only it verifies the control and data connections.
func TestTLSCertificateFromPEM(t *testing.T) {
	certPEM, keyPEM, pool := pemCert(t)
	e := startEnv(t, Config{TLS: TLSConfig{CertPEM: certPEM, KeyPEM: keyPEM}})
	c, err := ftp.Dial(e.addr, ftp.DialWithTimeout(10*time.Second),
		ftp.DialWithExplicitTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Login(testUser, testPass); err != nil {
		t.Fatal(err)
	}
	if err := c.Stor("/pem.txt", strings.NewReader("verified")); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.mem.ReadFile("/pem.txt"); string(got) != "verified" {
		t.Errorf("stored %q", got)
	}
	if err := CheckTLS(TLSRequired, TLSConfig{CertPEM: certPEM, KeyPEM: keyPEM}); err != nil {
		t.Errorf("CheckTLS: %v", err)
	}

	// A key that is not the certificate's refuses to start, without quoting the key.
	_, otherKey, _ := pemCert(t)
	_, err = New(Config{TLS: TLSConfig{CertPEM: certPEM, KeyPEM: otherKey}}, Deps{Auth: testAuth{}, Storage: startEnvStorage})
	if err == nil || !strings.Contains(err.Error(), "private key does not match public key") {
		t.Fatalf("mismatched key: %v", err)
	}
	if strings.Contains(err.Error(), strings.Split(otherKey, "\n")[1][:16]) {
		t.Error("the error quotes the key")
	}
	if err := CheckTLS(TLSRequired, TLSConfig{CertPEM: certPEM, KeyPEM: otherKey}); err == nil {
		t.Error("CheckTLS accepted a mismatched key")
	}
}

// FTPS speaks TLS 1.3 by default and, to TLS 1.2 clients, only AEAD suites with forward secrecy:
// OpenSSL's client forcing a CBC suite (or an RSA key exchange, or TLS 1.1) is refused at the
// handshake, while AES-GCM and ChaCha20-Poly1305 over TLS 1.2 still work for older clients.
// curl, forced to the same CBC suite, is refused too.
func TestTLSOnlyAEADSuites(t *testing.T) {
	openssl := testtool.Path(t, "openssl")
	e := startEnv(t, Config{}) // dev self-signed: an ECDSA certificate
	tests := []struct {
		name     string
		args     []string
		ok       bool
		protocol string // as s_client prints it
	}{
		{"default prefers TLS 1.3", nil, true, "TLSv1.3"},
		{"TLS 1.2 AES-GCM", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"}, true, "TLSv1.2"},
		{"TLS 1.2 ChaCha20", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}, true, "TLSv1.2"},
		{"TLS 1.2 CBC SHA-1", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"}, false, ""},
		{"TLS 1.2 CBC SHA-256", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"}, false, ""},
		{"TLS 1.2 CBC SHA-384", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA384"}, false, ""},
		{"TLS 1.1", []string{"-tls1_1", "-cipher", "ALL:@SECLEVEL=0"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			args := append([]string{"s_client", "-connect", e.addr, "-starttls", "ftp", "-brief"}, tt.args...)
			cmd := exec.CommandContext(ctx, openssl, args...)
			cmd.Stdin = strings.NewReader("QUIT\r\n")
			out, err := cmd.CombinedOutput()
			got := string(out)
			if tt.ok {
				if err != nil || !strings.Contains(got, "Protocol version: "+tt.protocol) {
					t.Fatalf("openssl %v: %v\n%s", tt.args, err, got)
				}
				return
			}
			if err == nil || strings.Contains(got, "Protocol version:") {
				t.Fatalf("openssl %v negotiated a session it should have been refused:\n%s", tt.args, got)
			}
		})
	}
	t.Run("curl CBC", func(t *testing.T) {
		curl := testtool.Path(t, "curl")
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, "-sS", "--ssl-reqd", "-k", "--tls-max", "1.2",
			"--ciphers", "ECDHE-ECDSA-AES128-SHA", "--user", testUser+":"+testPass,
			"ftp://"+e.addr+"/").CombinedOutput()
		if err == nil {
			t.Fatalf("curl with a CBC suite listed the home:\n%s", out)
		}
		if !strings.Contains(string(out), "SSL") && !strings.Contains(string(out), "TLS") {
			t.Errorf("curl failed for another reason than the handshake: %v\n%s", err, out)
		}
	})
}
