package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/strictyaml"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func noEnv(string) (string, bool) { return "", false }

func TestLoadFull(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "ferry.yaml", `
listen:
  sftp: "0.0.0.0:22"
  ftp: ":21"
  metrics: ""
storage:
  s3:
    bucket: my-bucket
    endpoint: http://127.0.0.1:7070
    region: eu-west-1
    path_style: true
    part_size: 16 MiB
    concurrency: 8
    max_rename_keys: 0
host_keys:
  paths: [k/ed25519, /abs/rsa]
  generate: false
users_file: ../users.yaml
sftp:
  idle_timeout: 1h
  login_timeout: 10s
  max_sessions: 10
  banner: "hello\n"
  write_window: 64MiB
  write_wait_timeout: 1m
ftp:
  public_host: 203.0.113.10
  passive_ports: 30000-30009
  active: true
  tls:
    mode: optional
    cert_file: tls/cert.pem
    key_file: tls/key.pem
  idle_timeout: 2m
  login_timeout: 45s
  banner: hi
  max_clients: 5
connections:
  max_per_ip: 8
  max_unauthenticated_per_ip: 4
  max_unauthenticated: 0
defender:
  enabled: true
  threshold: 30
  window: 1h
  login_failed_score: 5
  no_login_score: 0
  ban_time: 1h
  max_ban_time: 168h
  safelist: [10.0.0.0/8, 192.0.2.7]
  max_tracked: 5000
memory_limit: 128MiB
limits:
  transfer_memory: 1GiB
  transfer_memory_per_user: 100MiB
  transfer_memory_wait: 10s
  uploads_per_session: 2
  channels_per_connection: 3
log:
  level: debug
  format: json
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Listen = Listen{SFTP: "0.0.0.0:22", FTP: ":21"}
	want.Storage.S3 = S3{Bucket: "my-bucket", Endpoint: "http://127.0.0.1:7070", Region: "eu-west-1", PathStyle: true,
		PartSize: 16 * MiB, Concurrency: 8, MaxRenameKeys: 0, StallTimeout: 30 * time.Second}
	want.HostKeys = HostKeys{Paths: []string{filepath.Join(dir, "k/ed25519"), "/abs/rsa"}}
	want.UsersFile = filepath.Join(filepath.Dir(dir), "users.yaml")
	want.SFTP = SFTP{IdleTimeout: time.Hour, LoginTimeout: 10 * time.Second, MaxSessions: 10, Banner: "hello\n",
		WriteWindow: 64 * MiB, WriteWaitTimeout: time.Minute}
	want.FTP = FTP{PublicHost: "203.0.113.10", PassivePorts: "30000-30009", ImplicitTLSPort: 990, Active: true,
		TLS:         FTPTLS{Mode: "optional", CertFile: filepath.Join(dir, "tls/cert.pem"), KeyFile: filepath.Join(dir, "tls/key.pem")},
		IdleTimeout: 2 * time.Minute, LoginTimeout: 45 * time.Second, Banner: "hi", MaxClients: 5}
	want.Connections = Connections{MaxPerIP: 8, MaxUnauthenticatedPerIP: 4}
	want.Defender = Defender{Enabled: true, Threshold: 30, Window: time.Hour, LoginFailedScore: 5, BanTime: time.Hour,
		MaxBanTime: 168 * time.Hour, Safelist: []string{"10.0.0.0/8", "192.0.2.7"}, MaxTracked: 5000}
	want.Log = Log{Level: "debug", Format: "json"}
	want.MemoryLimit = 128 * MiB
	want.Limits = Limits{TransferMemory: GiB, TransferMemoryPerUser: 100 * MiB, TransferMemoryWait: 10 * time.Second,
		UploadsPerSession: 2, ChannelsPerConnection: 3}
	want.file, want.pos = c.file, c.pos
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if c.File() != p {
		t.Errorf("File() = %q", c.File())
	}
}

func TestLoadDefaults(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "ferry.yaml", "storage:\n  s3:\n    bucket: ferry\nsftp:\n  # everything commented out\n")
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Storage.S3.Bucket = "ferry"
	want.UsersFile = filepath.Join(dir, "users.yaml")
	want.HostKeys.Paths = []string{filepath.Join(dir, "keys/ssh_host_ed25519_key"), filepath.Join(dir, "keys/ssh_host_rsa_key")}
	want.file, want.pos = c.file, c.pos
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestEnvExpansion(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "ferry.yaml", `storage:
  s3:
    bucket: "${FERRY_TEST_BUCKET}"
    concurrency: ${FERRY_TEST_CONC}
host_keys:
  pem: "${FERRY_TEST_PEM}"
users_file: "${FERRY_TEST_DIR}/users.yaml"
`)
	env := map[string]string{"FERRY_TEST_BUCKET": "from-env", "FERRY_TEST_CONC": "16", "FERRY_TEST_PEM": "", "FERRY_TEST_DIR": "/etc/ferry"}
	c, err := Read(p, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.S3.Bucket != "from-env" || c.Storage.S3.Concurrency != 16 || c.UsersFile != "/etc/ferry/users.yaml" {
		t.Errorf("expansion: %+v users_file=%q", c.Storage.S3, c.UsersFile)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}

	// Load uses the process environment; unset variables are each named with their line.
	t.Setenv("FERRY_TEST_BUCKET", "set-bucket")
	_, err = Load(p)
	for _, want := range []string{
		p + ":4: storage.s3.concurrency: environment variable FERRY_TEST_CONC is not set",
		p + ":6: host_keys.pem: environment variable FERRY_TEST_PEM is not set",
		p + ":7: users_file: environment variable FERRY_TEST_DIR is not set",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nshould contain %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "FERRY_TEST_BUCKET") {
		t.Errorf("set variable reported missing: %v", err)
	}
}

// A typo'd key and a bad value are both reported, each at its own line, in one error.
func TestLoadReportsEveryProblemWithItsLine(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "ferry.yaml", `listen:
  sftp: "127.0.0.1:2222"
storage:
  s3:
    bucket: ferry
    part_sise: 8MiB
    concurrency: lots
sftp:
  idle_timeout: 15
`)
	_, err := Load(p)
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		p + `:6: storage.s3: unknown key "part_sise" (did you mean "part_size"?)`,
		p + `:7: storage.s3.concurrency: expected a whole number, got "lots"`,
		p + `:9: sftp.idle_timeout: invalid duration "15" (write e.g. 30s, 15m, 1h30m)`,
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestValidate(t *testing.T) {
	// Each case writes the base file plus one bad setting and expects one problem at a line.
	base := "storage:\n  s3:\n    bucket: ferry\n" // lines 1-3
	tests := []struct {
		name, extra string
		want        string // ":line: path: message prefix"
	}{
		{"bad sftp addr", "listen:\n  sftp: localhost\n", ":5: listen.sftp: must be host:port"},
		{"bad port", "listen:\n  metrics: 127.0.0.1:99999\n", ":5: listen.metrics: invalid port"},
		{"bad ftp addr", "listen:\n  ftp: \"127.0.0.1\"\nftp:\n  tls:\n    mode: none\n", ":5: listen.ftp: must be host:port"},
		{"ftps without a certificate", "listen:\n  ftp: 127.0.0.1:2121\nftp:\n  tls:\n    mode: required\n", ":7: ftp.tls: FTPS needs cert_file and key_file"},
		{"bad passive range", "ftp:\n  passive_ports: 60000-50000\n", ":5: ftp.passive_ports: want first-last"},
		{"bad tls mode", "ftp:\n  tls:\n    mode: maybe\n", ":6: ftp.tls.mode: must be required, optional or none"},
		{"nothing to serve", "listen:\n  sftp: \"\"\n  ftp: \"\"\n", ":4: listen: no file protocol is enabled"},
		{"same address twice", "listen:\n  ftp: 127.0.0.1:2222\nftp:\n  tls:\n    dev_self_signed: true\n", ":5: listen.ftp: \"127.0.0.1:2222\" is also used by listen.sftp"},
		{"bucket name", "", ""},
		{"endpoint", "    endpoint: 127.0.0.1:9000\n", ":4: storage.s3.endpoint: must be an http:// or https:// URL"},
		{"region", "    region: \"\"\n", ":4: storage.s3.region: required"},
		{"part size small", "    part_size: 4MiB\n", ":4: storage.s3.part_size: must be between 5MiB and 5GiB (S3 limits), got 4MiB"},
		{"concurrency", "    concurrency: 65\n", ":4: storage.s3.concurrency: must be between 1 and 64"},
		{"rename keys", "    max_rename_keys: -1\n", ":4: storage.s3.max_rename_keys: must not be negative"},
		{"stall timeout", "    stall_timeout: 100ms\n", ":4: storage.s3.stall_timeout: must be at least 1s (or 0 to disable), got 100ms"},
		{"drain timeout", "drain_timeout: -1s\n", ":4: drain_timeout: must be between 0 (abort at once) and 1h, got -1s"},
		{"no host keys", "host_keys:\n  paths: []\n", ":4: host_keys: SFTP needs host keys"},
		{"bad pem", "host_keys:\n  pem: not a key\n", ":5: host_keys.pem: must hold private keys as PEM text"},
		{"users file", "users_file: \"\"\n", ":4: users_file: required"},
		{"login timeout", "sftp:\n  login_timeout: 0s\n", ":5: sftp.login_timeout: must be positive"},
		{"idle timeout", "sftp:\n  idle_timeout: -1s\n", ":5: sftp.idle_timeout: must not be negative"},
		{"sessions", "sftp:\n  max_sessions: 0\n", ":5: sftp.max_sessions: must be at least 1"},
		{"window", "sftp:\n  write_window: 1MiB\n", ":5: sftp.write_window: must be between 2MiB and 1GiB"},
		{"wait", "sftp:\n  write_wait_timeout: 0s\n", ":5: sftp.write_wait_timeout: must be positive"},
		{"transfer memory", "limits:\n  transfer_memory: 8MiB\n", ":5: limits.transfer_memory: must be at least 16MiB, got 8MiB"},
		{"share too small for a part", "limits:\n  transfer_memory: 32MiB\n", ":5: limits.transfer_memory: each user's share (8MiB) must hold a part of storage.s3.part_size (5MiB) and a download's read-ahead (4MiB): at least 9MiB"},
		{"share above the budget", "limits:\n  transfer_memory_per_user: 512MiB\n", ":5: limits.transfer_memory_per_user: must be between 0 (a quarter of limits.transfer_memory) and limits.transfer_memory (256MiB), got 512MiB"},
		{"share too small for big parts", "    part_size: 64MiB\nlimits:\n  transfer_memory_per_user: 64MiB\n", ":6: limits.transfer_memory_per_user: each user's share (64MiB) must hold a part of storage.s3.part_size (64MiB)"},
		{"memory wait", "limits:\n  transfer_memory_wait: 0s\n", ":5: limits.transfer_memory_wait: must be positive"},
		{"uploads per session", "limits:\n  uploads_per_session: 0\n", ":5: limits.uploads_per_session: must be at least 1, got 0"},
		{"channels per connection", "limits:\n  channels_per_connection: 0\n", ":5: limits.channels_per_connection: must be at least 1, got 0"},
		{"level", "log:\n  level: verbose\n", ":5: log.level: must be debug, info, warn or error"},
		{"format", "log:\n  format: xml\n", ":5: log.format: must be text or json"},
		{"health addr", "listen:\n  health: nope\n", ":5: listen.health: must be host:port"},
		{"health beside metrics", "listen:\n  health: 127.0.0.1:9100\n", ":5: listen.health: \"127.0.0.1:9100\" is also used by listen.metrics"},
		{"trusted cidr", "listen:\n  proxy_protocol:\n    trusted: [10.0.0.0/16, 10.0.0.0/33]\n", ":6: listen.proxy_protocol.trusted[1]: \"10.0.0.0/33\" is not an address or CIDR"},
		{"proxy protocol without passive ports", "listen:\n  ftp: 127.0.0.1:2121\n  proxy_protocol:\n    trusted: [10.0.0.0/16]\nftp:\n  passive_ports: \"\"\n  tls:\n    mode: none\n",
			":9: ftp.passive_ports: required with listen.proxy_protocol"},
		{"implicit port among passive ports", "listen:\n  ftp: 127.0.0.1:2121\n  proxy_protocol:\n    trusted: [10.0.0.0/16]\nftp:\n  passive_ports: 30000-30999\n  implicit_tls_port: 30500\n  tls:\n    mode: none\n",
			":10: ftp.implicit_tls_port: 30500 is inside ftp.passive_ports 30000-30999"},
		{"implicit FTPS behind the load balancer without listen.ftp", "listen:\n  ftps_implicit: 127.0.0.1:9990\n  proxy_protocol:\n    trusted: [10.0.0.0/16]\nftp:\n  tls:\n    dev_self_signed: true\n",
			":4: listen.ftp: required with listen.proxy_protocol and listen.ftps_implicit"},
		{"implicit port range", "ftp:\n  implicit_tls_port: 70000\n", ":5: ftp.implicit_tls_port: must be a port"},
		{"s3 users file bucket", "users_file: s3://My_Bucket/users.yaml\n", ":4: users_file: bucket name \"My_Bucket\" may only hold"},
		{"s3 users file without key", "users_file: s3://acme-ferry\n", ":4: users_file: \"s3://acme-ferry\" names no object"},
		{"s3 users file folder", "users_file: s3://acme-ferry/config/\n", ":4: users_file: \"s3://acme-ferry/config/\" names no object"},
		{"users poll interval", "users_poll_interval: 100ms\n", ":4: users_poll_interval: must be at least 1s, got 100ms"},
		{"cert pem alone", "ftp:\n  tls:\n    cert_pem: " + yq(testCertPEM) + "\n", ":5: ftp.tls: cert_pem and key_pem go together"},
		{"cert pem and file", "ftp:\n  tls:\n    cert_file: c\n    key_file: k\n    cert_pem: " + yq(testCertPEM) + "\n    key_pem: " + yq(testKeyPEM) + "\n",
			":5: ftp.tls: set cert_file and key_file, or cert_pem and key_pem, not both"},
		{"cert pem not pem", "ftp:\n  tls:\n    cert_pem: not a certificate\n    key_pem: " + yq(testKeyPEM) + "\n",
			":6: ftp.tls.cert_pem: must hold a certificate chain as PEM text"},
		{"key pem holds a certificate", "ftp:\n  tls:\n    cert_pem: " + yq(testCertPEM) + "\n    key_pem: " + yq(testCertPEM) + "\n",
			":7: ftp.tls.key_pem: must hold a private key as PEM text: it has no -----BEGIN ... PRIVATE KEY----- block"},
		{"ftp login timeout", "ftp:\n  login_timeout: 0s\n", ":5: ftp.login_timeout: must be positive"},
		{"connections negative", "connections:\n  max_per_ip: -1\n", ":5: connections.max_per_ip: must not be negative"},
		{"connections unreachable", "connections:\n  max_per_ip: 4\n  max_unauthenticated_per_ip: 8\n", ":6: connections.max_unauthenticated_per_ip: 8 is above connections.max_per_ip 4"},
		{"defender safelist", "defender:\n  safelist: [10.0.0.0/8, nope]\n", ":5: defender.safelist[1]: \"nope\" is not an address or CIDR"},
		{"defender threshold", "defender:\n  threshold: 0\n", ":5: defender.threshold: must be at least 1"},
		{"defender window", "defender:\n  window: 0s\n", ":5: defender.window: must be positive"},
		{"defender scores", "defender:\n  login_failed_score: 0\n  no_login_score: 0\n", ":4: defender: login_failed_score and no_login_score are both 0"},
		{"defender ban time", "defender:\n  ban_time: 2h\n  max_ban_time: 1h\n", ":6: defender.max_ban_time: 1h0m0s is shorter than defender.ban_time 2h0m0s"},
		{"defender tracked", "defender:\n  max_tracked: 0\n", ":5: defender.max_tracked: must be at least 1"},
		{"embedded without credentials", "embedded:\n  s3:\n    listen: 127.0.0.1:9000\n    data_dir: d\n", ":5: embedded.s3: access_key and secret are required"},
		{"key-encryption key too short", "embedded:\n  s3:\n    listen: 127.0.0.1:9000\n    data_dir: d\n    access_key: k\n    secret: s\n    key_encryption_key: c2hvcnQtc2VjcmV0\n",
			":10: embedded.s3.key_encryption_key: not 32 bytes in base64 or hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := base + tt.extra
			if tt.name == "bucket name" {
				src, tt.want = "storage:\n  s3:\n    bucket: My_Bucket\n", ":3: storage.s3.bucket: bucket name \"My_Bucket\" may only hold"
			}
			p := writeFile(t, t.TempDir(), "ferry.yaml", src)
			c, err := Read(p, noEnv)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			if err == nil {
				t.Fatalf("no problem, want %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], p+tt.want) {
				t.Errorf("got:\n%v\nwant one problem starting %q", err, p+tt.want)
			}
			var prob *strictyaml.Problem
			if !errors.As(err, &prob) {
				t.Errorf("not a *strictyaml.Problem: %T", err)
			}
		})
	}
}

// Shapes of PEM blocks for the validation cases (their content is parsed by ftpd, not here).
const (
	testCertPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	testKeyPEM  = "-----BEGIN EC PRIVATE KEY-----\nMIIB\n-----END EC PRIVATE KEY-----\n"
)

// yq writes s as a YAML double-quoted scalar (a Go-quoted string is one).
func yq(s string) string { return strconv.Quote(s) }

// The keys several replicas behind a load balancer need, with values from the environment as
// the task definition sets them.
func TestLoadReplicaSettings(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "ferry.yaml", `listen:
  sftp: "0.0.0.0:2222"
  ftp: "0.0.0.0:2121"
  health: "0.0.0.0:8080"
  proxy_protocol:
    trusted: ["${VPC_CIDR}", 192.0.2.7]
storage:
  s3:
    bucket: acme
users_file: "${USERS}"
users_poll_interval: 10s
ftp:
  passive_ports: "${PASSIVE}"
  implicit_tls_port: 990
  tls:
    cert_pem: "${CERT}"
    key_pem: "${KEY}"
host_keys:
  paths: []
  generate: false
  pem: "${KEY}"
`)
	env := map[string]string{"VPC_CIDR": "10.1.0.0/16", "USERS": "s3://acme-config/ferry/users.yaml",
		"PASSIVE": "30000-30031", "CERT": testCertPEM, "KEY": testKeyPEM}
	c, err := Read(p, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.UsersFile != "s3://acme-config/ferry/users.yaml" {
		t.Errorf("users_file = %q: an S3 URL is not a path to resolve", c.UsersFile)
	}
	if b, k, ok := ParseS3URL(c.UsersFile); !ok || b != "acme-config" || k != "ferry/users.yaml" {
		t.Errorf("ParseS3URL = %q %q %v", b, k, ok)
	}
	if c.UsersPollInterval != 10*time.Second || c.Listen.Health != "0.0.0.0:8080" || c.FTP.ImplicitTLSPort != 990 {
		t.Errorf("poll %s health %q implicit %d", c.UsersPollInterval, c.Listen.Health, c.FTP.ImplicitTLSPort)
	}
	if c.FTP.TLS.CertPEM != testCertPEM || c.FTP.TLS.KeyPEM != testKeyPEM {
		t.Error("PEM text not taken from the environment as is")
	}
	prefixes, err := c.Listen.ProxyProtocol.TrustedPrefixes()
	if err != nil || len(prefixes) != 2 || prefixes[0].String() != "10.1.0.0/16" || prefixes[1].String() != "192.0.2.7/32" {
		t.Errorf("trusted = %v, %v", prefixes, err)
	}
	if !c.Listen.ProxyProtocol.Enabled() || Default().Listen.ProxyProtocol.Enabled() {
		t.Error("Enabled")
	}
	if d := Default(); d.UsersPollInterval != 5*time.Second || d.FTP.ImplicitTLSPort != 990 || d.Listen.Health != "" {
		t.Errorf("defaults: poll %s implicit %d health %q", d.UsersPollInterval, d.FTP.ImplicitTLSPort, d.Listen.Health)
	}
}

func TestMemoryLimit(t *testing.T) {
	c := Default()
	c.Storage.S3.Bucket = "ferry"
	if err := c.Validate(); err != nil || c.MemoryLimit != 24*MiB {
		t.Fatalf("default memory limit %s, validate: %v", c.MemoryLimit, err)
	}
	c.MemoryLimit = 0 // Go's default
	if err := c.Validate(); err != nil {
		t.Errorf("memory_limit 0: %v", err)
	}
	c.MemoryLimit = -1 // YAML refuses negative sizes; a config built in code is checked too
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "memory_limit: must not be negative") {
		t.Errorf("negative memory_limit: %v", err)
	}
	p := writeFile(t, t.TempDir(), "ferry.yaml", "storage:\n  s3:\n    bucket: ferry\nmemory_limit: -1MiB\n")
	if _, err := Read(p, noEnv); err == nil || !strings.Contains(err.Error(), ":4: memory_limit: invalid size") {
		t.Errorf("negative memory_limit in YAML: %v", err)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	err := c.Validate()
	if err == nil || err.Error() != "storage.s3.bucket: required" {
		t.Errorf("got %v", err)
	}
	c.Storage.S3.Bucket = "ferry"
	c.HostKeys.PEM = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
	if err := c.Validate(); err != nil {
		t.Errorf("defaults + bucket: %v", err)
	}
}

func TestReadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v", err)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l := Log{Level: "warn", Format: "json"}.NewLogger(&buf)
	l.Info("hidden")
	l.Warn("shown", "k", "v")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `"msg":"shown"`) {
		t.Errorf("log output %q", out)
	}
}

// TestEmbeddedWithEndpoint: the gateway stores into the embedded endpoint, so a second
// endpoint is a contradiction reported at its line.
func TestEmbeddedWithEndpoint(t *testing.T) {
	p := writeFile(t, t.TempDir(), "ferry.yaml", "storage:\n  s3:\n    bucket: ferry\n    endpoint: http://127.0.0.1:7070\n"+
		"embedded:\n  s3:\n    listen: 127.0.0.1:9000\n    data_dir: d\n    access_key: a\n    secret: b\n")
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p+":4: storage.s3.endpoint: must be empty when embedded.s3 runs") {
		t.Fatalf("Load = %v", err)
	}
}
