package ftpd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
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
