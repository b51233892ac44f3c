package config_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

const configsDir = "../../../configs"

// Every file in configs/ loads and validates: a config as a config (with its users file when
// that is in configs/ too), a users*.yaml as a users file, without warnings.
func TestExampleConfigs(t *testing.T) {
	setAWSEnv(t)
	files, err := filepath.Glob(filepath.Join(configsDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found %d files in %s, want at least the 4 examples", len(files), configsDir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if strings.HasPrefix(filepath.Base(f), "users") {
				list, warnings, err := users.Load(f)
				if err != nil {
					t.Fatal(err)
				}
				if len(warnings) > 0 || len(list) == 0 {
					t.Errorf("%d users, warnings %q", len(list), warnings)
				}
				return
			}
			if filepath.Base(f) == "pipeline.yaml" {
				// Routes, not a gateway config: the embedded default loads it through
				// pipeline/route, whose tests load and run this file; here its reference.
				dev, err := config.Load(filepath.Join(configsDir, "dev.yaml"))
				if err != nil || dev.Embedded.Pipeline.Routes != f {
					t.Errorf("dev.yaml's embedded.pipeline.routes = %q (%v), want %s", dev.Embedded.Pipeline.Routes, err, f)
				}
				return
			}
			c, err := config.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, onS3 := config.ParseS3URL(c.UsersFile); onS3 || filepath.IsAbs(c.UsersFile) {
				return // a production location such as /etc/ferry/users.yaml or s3://…
			}
			if _, _, err := users.Load(c.UsersFile); err != nil {
				t.Errorf("its users file: %v", err)
			}
		})
	}
}

func TestDevConfig(t *testing.T) {
	c, err := config.Load(filepath.Join(configsDir, "dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Fixed points that the README and scripts rely on.
	s, e := c.Storage.S3, c.Embedded.S3
	if c.Listen.SFTP != "127.0.0.1:2222" || c.Listen.FTP != "127.0.0.1:2121" || c.Listen.Metrics != "127.0.0.1:9100" ||
		s.Bucket != "ferry" || s.Endpoint != "" {
		t.Errorf("dev config: listen %+v, s3 %+v", c.Listen, s)
	}
	if e.Listen != "127.0.0.1:9000" || e.AccessKey != "ferry" || e.Secret != "ferrysecret" ||
		e.DataDir != filepath.Join(configsDir, "..", "data", "s3") {
		t.Errorf("dev embedded s3: %+v", e)
	}
	if c.UsersFile != filepath.Join(configsDir, "users.dev.yaml") {
		t.Errorf("users_file = %q", c.UsersFile)
	}
	for _, p := range c.HostKeys.Paths {
		if !strings.HasPrefix(p, filepath.Join(configsDir, "..", "data")+"/") {
			t.Errorf("dev host key %q is not under the git-ignored data/ folder", p)
		}
	}
	list, _, err := users.Load(c.UsersFile)
	if err != nil {
		t.Fatal(err)
	}
	demo := list[0]
	if demo.Name != "demo" || demo.Home != "incoming/demo/" || demo.Permissions.ReadOnly() || len(demo.Permissions.Names()) != 7 {
		t.Errorf("demo = %+v", demo)
	}
	if bcrypt.CompareHashAndPassword([]byte(demo.PasswordHash), []byte("demo")) != nil {
		t.Error("demo's password is not demo")
	}
}

func TestUsersExample(t *testing.T) {
	list, _, err := users.Load(filepath.Join(configsDir, "users.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var readOnly, keyOnly bool
	for _, u := range list {
		readOnly = readOnly || u.Permissions.ReadOnly() && u.Permissions.List
		keyOnly = keyOnly || u.PasswordHash == "" && len(u.PublicKeys) > 0
	}
	if !readOnly || !keyOnly {
		t.Errorf("the example should show a read-only user (%v) and a key-only user (%v)", readOnly, keyOnly)
	}
}

// awsEnv is the environment the task definition sets for configs/ferry.aws.yaml, with
// placeholder values (the secrets are real PEM, generated: the gateway parses them).
func awsEnv(t *testing.T) map[string]string {
	t.Helper()
	cert, key := selfSigned(t)
	return map[string]string{
		"FERRY_BUCKET":        "acme-partner-drop",
		"FERRY_USERS_FILE":    "s3://acme-partner-drop/.ferry/config/users.yaml",
		"FERRY_REGION":        "eu-west-1",
		"FERRY_EVENT_BUS":     "default",
		"FERRY_PASSIVE_PORTS": "30000-30031",
		"FERRY_PUBLIC_HOST":   "",
		"FERRY_PROXY_TRUSTED": "10.0.0.0/16",
		"FERRY_HOST_KEYS":     hostKey(t),
		"FERRY_FTPS_CERT":     cert,
		"FERRY_FTPS_KEY":      key,
	}
}

func setAWSEnv(t *testing.T) {
	for k, v := range awsEnv(t) {
		t.Setenv(k, v)
	}
}

// The AWS example is what the image runs: the settings the NLB design needs are in it, from the
// environment the task definition sets.
func TestAWSConfig(t *testing.T) {
	setAWSEnv(t)
	c, err := config.Load(filepath.Join(configsDir, "ferry.aws.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listen
	if l.SFTP != "0.0.0.0:2222" || l.FTP != "0.0.0.0:2121" || l.Health != "0.0.0.0:8080" || l.Metrics != "0.0.0.0:9100" || l.FTPSImplicit != "" {
		t.Errorf("listeners %+v: the contract with the templates is SFTP 2222, FTP 2121, health 8080, metrics 9100", l)
	}
	if p, err := l.ProxyProtocol.TrustedPrefixes(); err != nil || len(p) != 1 || p[0].String() != "10.0.0.0/16" {
		t.Errorf("proxy_protocol.trusted = %v (%v)", p, err)
	}
	if c.UsersFile != "s3://acme-partner-drop/.ferry/config/users.yaml" || c.Storage.S3.Bucket != "acme-partner-drop" ||
		c.Storage.S3.Region != "eu-west-1" || c.Storage.S3.Endpoint != "" || c.Events.EventBridge.Bus != "default" {
		t.Errorf("users %q, storage %+v, bus %q", c.UsersFile, c.Storage.S3, c.Events.EventBridge.Bus)
	}
	f := c.FTP
	if f.PassivePorts != "30000-30031" || f.ImplicitTLSPort != 990 || f.PublicHost != "" || f.TLS.Mode != "required" ||
		f.TLS.CertPEM == "" || f.TLS.KeyPEM == "" || f.TLS.CertFile != "" || f.TLS.DevSelfSigned {
		t.Errorf("ftp %+v", f)
	}
	if h := c.HostKeys; len(h.Paths) != 0 || h.Generate || h.PEM == "" {
		t.Errorf("host keys %+v: replicas must share the key from the environment, never generate one", h)
	}
	if c.Embedded.S3.Enabled() || c.Log.Format != "json" {
		t.Errorf("embedded %+v, log %+v", c.Embedded, c.Log)
	}
	// An unset variable is refused, naming it (the task definition must set every one).
	t.Setenv("FERRY_PUBLIC_HOST", "")
	os.Unsetenv("FERRY_PUBLIC_HOST")
	if _, err := config.Load(filepath.Join(configsDir, "ferry.aws.yaml")); err == nil || !strings.Contains(err.Error(), "FERRY_PUBLIC_HOST is not set") {
		t.Errorf("load without FERRY_PUBLIC_HOST = %v", err)
	}
}

func hostKey(t *testing.T) string {
	t.Helper()
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(sk, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ftp.example.com"},
		DNSNames: []string{"ftp.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
}
