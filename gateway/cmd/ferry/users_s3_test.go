package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// s3Config writes a config whose users_file is an object on srv, reached through endpoint.
func s3Config(t *testing.T, srv *s3test.Server, endpoint, key string) string {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.Secret)
	dir := t.TempDir()
	keyPEM, _ := newKey(t)
	write(t, filepath.Join(dir, "keys", "ssh_host_ed25519_key"), string(keyPEM))
	cfg := filepath.Join(dir, "ferry.yaml")
	write(t, cfg, "storage:\n  s3:\n    bucket: "+srv.Bucket+"\n    endpoint: "+endpoint+"\n    region: "+srv.Region+
		"\n    path_style: true\nhost_keys:\n  paths: [keys/ssh_host_ed25519_key]\n  generate: false\nusers_file: s3://"+srv.Bucket+"/"+key+"\n")
	return cfg
}

// racingProxy forwards to an S3 server and, on the first GET of key, lets another admin's edit
// land after the server answered and before the answer is passed on: the edit being served
// then writes over a file that changed since it was read. Requests pass unchanged (Host included), so their signatures still hold.
func racingProxy(t *testing.T, target, key string, other func()) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	var once sync.Once
	rp.ModifyResponse = func(resp *http.Response) error {
		// The reply (and its ETag) left the server before the other edit: it is what was read.
		if r := resp.Request; r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/"+key) {
			once.Do(other)
		}
		return nil
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// `ferry user` on a users file in S3: create, list, passwd, del; and two admins at once: the
// one whose file changed under it exits 1 saying so and to run again, having written nothing.
func TestUserCommandsOnS3(t *testing.T) {
	srv := s3test.Start(t)
	const key = "config/users.yaml"
	other := func() {
		// The second admin, straight to the server.
		h, _ := users.HashPassword("other")
		src := users.S3Object(srv.Client(), srv.Bucket, key)
		if err := users.Add(context.Background(), src, users.Entry{Name: "olga", PasswordHash: h, Home: "olga/", Permissions: []string{"list"}}); err != nil {
			t.Errorf("the other admin's edit: %v", err)
		}
	}
	cfg := s3Config(t, srv, srv.Endpoint, key)
	racing := s3Config(t, srv, racingProxy(t, srv.Endpoint, key, other), key)
	url := "s3://" + srv.Bucket + "/" + key
	steps := []struct {
		name     string
		stdin    string
		args     []string
		code     int
		out, err string
	}{
		{"list before the file exists", "", []string{"user", "list", "--config", cfg}, 1, "", url + ": file does not exist"},
		{"add creates the object", "pw\n", []string{"user", "add", "alice", "--config", cfg, "--home", "alice/", "--password-stdin"}, 0, "", "added alice to " + url},
		{"add over a concurrent edit", "", []string{"user", "add", "bob", "--config", racing, "--home", "bob/", "--key", keyLineFor(t)}, 1, "",
			url + ": the users file was changed by someone else since it was read\nuser add: nothing was written; run the command again"},
		{"the same add again", "", []string{"user", "add", "bob", "--config", racing, "--home", "bob/", "--key", keyLineFor(t)}, 0, "", "added bob"},
		{"passwd", "newpw\n", []string{"user", "passwd", "alice", "--config", cfg}, 0, "", "password of alice set in " + url},
		{"--users names the object", "", []string{"user", "del", "olga", "--config", cfg, "--users", url}, 0, "", "removed olga from " + url},
		{"list", "", []string{"user", "list", "--config", cfg}, 0, "alice", ""},
		{"check leaves it unread", "", []string{"check", "--config", cfg}, 0, "users in " + url + " (not read: --fetch-users reads it)", ""},
		{"check --fetch-users", "", []string{"check", "--config", cfg, "--fetch-users"}, 0, "2 user(s) in " + url, ""},
	}
	for _, s := range steps {
		r := ferry(t, s.stdin, s.args...)
		if r.code != s.code || !strings.Contains(r.stdout, s.out) || !strings.Contains(r.stderr, s.err) {
			t.Fatalf("%s: ferry %q = %d\nstdout: %s\nstderr: %s", s.name, s.args, r.code, r.stdout, r.stderr)
		}
	}
	list, _, err := users.Read(context.Background(), users.S3Object(srv.Client(), srv.Bucket, key))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range list {
		names = append(names, u.Name)
	}
	if strings.Join(names, ",") != "alice,bob" {
		t.Errorf("users in S3 = %v, want alice,bob (olga added by the other admin, then deleted)", names)
	}
}

var keyLineOnce struct {
	sync.Once
	line string
}

func keyLineFor(t *testing.T) string {
	keyLineOnce.Do(func() { _, keyLineOnce.line = newKey(t) })
	return keyLineOnce.line
}

// testCert returns a self-signed certificate and its key as PEM.
func testCert(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ferry-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}

// The FTPS certificate from the environment is loaded by check; a key that does not match is a
// problem reported without a byte of the key.
func TestCheckFTPSCertificateFromEnvironment(t *testing.T) {
	_, cfg, _ := setup(t)
	write(t, cfg, "listen:\n  ftp: 127.0.0.1:2121\nstorage:\n  s3:\n    bucket: ferry\nhost_keys:\n  paths: [keys/ssh_host_ed25519_key]\n  generate: false\n"+
		"ftp:\n  tls:\n    cert_pem: \"${FERRY_FTPS_CERT}\"\n    key_pem: \"${FERRY_FTPS_KEY}\"\n")
	cert, key := testCert(t)
	t.Setenv("FERRY_FTPS_CERT", cert)
	t.Setenv("FERRY_FTPS_KEY", key)
	if r := ferry(t, "", "check", "--config", cfg); r.code != 0 {
		t.Fatalf("check with a good certificate: %+v", r)
	}
	_, otherKey := testCert(t)
	t.Setenv("FERRY_FTPS_KEY", otherKey)
	r := ferry(t, "", "check", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "TLS certificate from cert_pem and key_pem: tls: private key does not match public key") {
		t.Errorf("check with a mismatched key: %+v", r)
	}
	keyBody := strings.Split(otherKey, "\n")[1]
	if strings.Contains(r.stderr+r.stdout, keyBody[:20]) {
		t.Error("check printed the private key")
	}
	t.Setenv("FERRY_FTPS_KEY", "not pem")
	r = ferry(t, "", "check", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, cfg+":"+strconv.Itoa(12)+": ftp.tls.key_pem: must hold a private key as PEM text") || strings.Contains(r.stderr, "not pem") {
		t.Errorf("check with a key that is not PEM: %+v", r)
	}
}

// `ferry check` accepts the AWS example with the environment the task definition sets
// (secrets as generated placeholders), offline: the users file in S3 is not read.
func TestCheckAWSExample(t *testing.T) {
	hostKey, _ := newKey(t)
	cert, key := testCert(t)
	for k, v := range map[string]string{
		"FERRY_BUCKET": "acme-partner-drop", "FERRY_USERS_FILE": "s3://acme-partner-drop/.ferry/config/users.yaml",
		"FERRY_REGION": "eu-west-1", "FERRY_EVENT_BUS": "default", "FERRY_PASSIVE_PORTS": "30000-30031",
		"FERRY_PUBLIC_HOST": "", "FERRY_PROXY_TRUSTED": "10.0.0.0/16",
		"FERRY_HOST_KEYS": string(hostKey), "FERRY_FTPS_CERT": cert, "FERRY_FTPS_KEY": key,
	} {
		t.Setenv(k, v)
	}
	const cfg = "../../../configs/ferry.aws.yaml"
	r := ferry(t, "", "check", "--config", cfg)
	want := "ok: " + cfg + ": users in s3://acme-partner-drop/.ferry/config/users.yaml (not read: --fetch-users reads it), 1 host key(s)\n"
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Errorf("check of the AWS example = %+v\nwant stdout %q", r, want)
	}
	// A secret that is not what it should be is a problem, named by its key.
	t.Setenv("FERRY_FTPS_KEY", cert)
	if r := ferry(t, "", "check", "--config", cfg); r.code != 1 || !strings.Contains(r.stderr, "ftp.tls.key_pem: must hold a private key as PEM text") {
		t.Errorf("check with a certificate as the key = %+v", r)
	}
}
