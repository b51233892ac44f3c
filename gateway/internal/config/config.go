// Package config is Ferry's typed configuration (`ferry serve --config FILE`): strict YAML with
// ${VAR} environment references, defaults, and a Validate that reports every problem with
// file:line.
package config

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/redact"
	"github.com/ferrygw/ferry/pipeline/strictyaml"
)

// Config is the whole configuration file.
type Config struct {
	Listen   Listen   `yaml:"listen"`
	Storage  Storage  `yaml:"storage"`
	HostKeys HostKeys `yaml:"host_keys"`
	// UsersFile is the users file (see package users): a path, relative to the config file's
	// folder, or an S3 object "s3://bucket/key" that every replica reads.
	UsersFile string `yaml:"users_file"`
	// UsersPollInterval is how often an S3 users file's ETag is checked for a change (a local
	// file is watched instead).
	UsersPollInterval time.Duration `yaml:"users_poll_interval"`
	SFTP              SFTP          `yaml:"sftp"`
	FTP               FTP           `yaml:"ftp"`
	// Connections limits connections that have not logged in, and connections per client
	// address, over SFTP and FTP together (package defender).
	Connections Connections `yaml:"connections"`
	// Defender bans client addresses that guess passwords or keep connecting without logging
	// in (package defender).
	Defender Defender `yaml:"defender"`
	// Embedded is the no-AWS default: an S3-compatible endpoint on a local directory (and,
	// as they land, the local event bus and notification sink) in the same process.
	Embedded Embedded `yaml:"embedded"`
	// Events says where the gateway's own events (Transfer Completed/Failed, Login Failed) go
	// on AWS; with the embedded bus they go there instead.
	Events Events `yaml:"events"`
	// Recovery finds and aborts the multipart uploads a crashed gateway left (package recovery).
	Recovery Recovery `yaml:"recovery"`
	Log      Log      `yaml:"log"`
	// Limits bound what clients can make the gateway hold: transfer memory, uploads and
	// channels.
	Limits Limits `yaml:"limits"`
	// MemoryLimit is the soft limit on the gateway's Go memory besides transfer memory (heap,
	// stacks, runtime; the process's RSS adds a few MiB of code): the runtime's limit is this
	// plus the transfer memory allocated at the moment (limits.transfer_memory bounds that),
	// and grows with the rest of the live heap (x1.5) when many sessions need more, so the GC
	// never fights memory the gateway legitimately holds. 0 leaves Go's default (no limit);
	// GOMEMLIMIT in the environment overrides it. Default 24MiB.
	MemoryLimit Size `yaml:"memory_limit"`
	// DrainTimeout is how long transfers in progress may go on after SIGTERM (no new connection
	// is accepted meanwhile); those still running then are aborted: no object, no pending
	// multipart upload, a Transfer Failed event. Keep it below the orchestrator's stop timeout
	// (ECS's stopTimeout, Kubernetes' terminationGracePeriodSeconds). Default 30s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`

	file string               // the file it was read from, for messages
	pos  strictyaml.Positions // line of every value written in it
}

// Listen holds the listening addresses (host:port); an empty address disables that listener.
type Listen struct {
	SFTP string `yaml:"sftp"`
	FTP  string `yaml:"ftp"`
	// FTPSImplicit is an implicit-TLS FTPS listener (TLS from the first byte, port 990 by tradition).
	FTPSImplicit string `yaml:"ftps_implicit"`
	Metrics      string `yaml:"metrics"` // /metrics and /healthz
	// Health serves only GET /healthz (liveness) and GET /readyz (readiness), for a load
	// balancer's health checks.
	Health string `yaml:"health"`
	// PProf serves Go's profiles (/debug/pprof/) for diagnosing a slow or growing gateway. Off
	// by default; only a loopback address is accepted (profiles reveal memory contents and
	// cost CPU to produce), so reaching it takes a shell on the host or a port forward.
	PProf string `yaml:"pprof"`
	// ProxyProtocol makes the SFTP, FTP and implicit-FTPS listeners take connections only from a
	// load balancer that sends a PROXY protocol header.
	ProxyProtocol ProxyProtocol `yaml:"proxy_protocol"`
}

// ProxyProtocol configures PROXY protocol (v2 as AWS's NLB sends it; v1 accepted too).
type ProxyProtocol struct {
	// Trusted are the load balancers' addresses (CIDRs or single addresses). When set, every
	// connection to the SFTP, FTP and implicit-FTPS listeners must come from one of them and
	// start with a PROXY header, whose client address is the one the gateway sees.
	Trusted []string `yaml:"trusted"`
}

// Enabled reports whether connections come through a PROXY-protocol load balancer.
func (p ProxyProtocol) Enabled() bool { return len(p.Trusted) > 0 }

// TrustedPrefixes parses Trusted; Validate reports a malformed entry.
func (p ProxyProtocol) TrustedPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(p.Trusted))
	for _, s := range p.Trusted {
		pfx, err := ParseCIDR(s)
		if err != nil {
			return nil, err
		}
		out = append(out, pfx)
	}
	return out, nil
}

// ParseCIDR parses a CIDR ("10.0.0.0/16") or a single address ("192.0.2.7", a /32 or /128).
func ParseCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR (e.g. 10.0.0.0/16, 192.0.2.7)", s)
}

// Storage says where files go.
type Storage struct {
	S3 S3 `yaml:"s3"`
}

// S3 is the bucket uploads stream into.
type S3 struct {
	Bucket    string `yaml:"bucket"`
	Endpoint  string `yaml:"endpoint"` // empty = AWS; e.g. http://127.0.0.1:7070
	Region    string `yaml:"region"`
	PathStyle bool   `yaml:"path_style"`
	// PartSize is the multipart part size (S3 minimum 5MiB, maximum 5GiB).
	PartSize Size `yaml:"part_size"`
	// Concurrency is the number of parts uploaded in parallel per upload.
	Concurrency int `yaml:"concurrency"`
	// MaxRenameKeys bounds directory renames (S3 has no rename: each key is copied and deleted);
	// renaming a directory with more keys is refused.
	MaxRenameKeys int `yaml:"max_rename_keys"`
	// StallTimeout fails an S3 request whose connection moved no byte in either direction for
	// this long; the SDK then retries it. 0 disables (a server that never answers then holds
	// the transfer until its client gives up). Default 30s.
	StallTimeout time.Duration `yaml:"stall_timeout"`
}

// HostKeys says where the SSH host keys come from (see package hostkeys).
type HostKeys struct {
	Paths    []string `yaml:"paths"`    // private key files; relative to the config file's folder
	Generate bool     `yaml:"generate"` // create missing key files on first start
	PEM      string   `yaml:"pem"`      // PEM blocks, e.g. "${FERRY_HOST_KEYS}", shared by replicas
}

// SFTP tunes the SFTP server.
type SFTP struct {
	IdleTimeout  time.Duration `yaml:"idle_timeout"` // 0 = never
	LoginTimeout time.Duration `yaml:"login_timeout"`
	MaxSessions  int           `yaml:"max_sessions"`
	Banner       string        `yaml:"banner"`
	// WriteWindow bounds the out-of-order write data held per upload while waiting for the
	// missing earlier bytes; WriteWaitTimeout is how long a write may wait for them.
	WriteWindow      Size          `yaml:"write_window"`
	WriteWaitTimeout time.Duration `yaml:"write_wait_timeout"`
	// LegacyAlgorithms also accepts SHA-1 key exchanges and MACs, CBC ciphers and ssh-rsa
	// (SHA-1) signatures, for old devices that know nothing else; warned at start.
	LegacyAlgorithms bool `yaml:"legacy_algorithms"`
}

// FTP tunes the FTP/FTPS server.
type FTP struct {
	// PublicHost is the address announced in PASV replies (behind NAT or a load balancer the
	// listen address is not what clients must dial); empty = the control connection's local address.
	PublicHost string `yaml:"public_host"`
	// PassivePorts is the passive data port range, "first-last"; empty = any free port. With
	// PROXY protocol these are the load balancer's ports, routed to this replica's FTP listener.
	PassivePorts string `yaml:"passive_ports"`
	// ImplicitTLSPort is, with PROXY protocol, the port clients dial for implicit FTPS: a
	// connection to the FTP listener whose header names it is implicit FTPS. 0 = none.
	ImplicitTLSPort int `yaml:"implicit_tls_port"`
	// Active allows PORT/EPRT data connections (off by default).
	Active      bool          `yaml:"active"`
	TLS         FTPTLS        `yaml:"tls"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// LoginTimeout closes a control connection not logged in this long after it was accepted;
	// nothing the client sends extends it.
	LoginTimeout time.Duration `yaml:"login_timeout"`
	Banner       string        `yaml:"banner"`
	MaxClients   int           `yaml:"max_clients"`
}

// Connections bounds what connections may do before logging in. A client address is an IPv4
// address or an IPv6 /64. 0 means no limit.
type Connections struct {
	// MaxPerIP bounds the connections (SFTP and FTP control, logged in or not) from one address.
	MaxPerIP int `yaml:"max_per_ip"`
	// MaxUnauthenticatedPerIP bounds the connections from one address that have not logged in.
	MaxUnauthenticatedPerIP int `yaml:"max_unauthenticated_per_ip"`
	// MaxUnauthenticated bounds the connections that have not logged in, from every address.
	MaxUnauthenticated int `yaml:"max_unauthenticated"`
}

// Defender configures bans of client addresses.
type Defender struct {
	// Enabled turns bans on (the connection limits apply either way).
	Enabled bool `yaml:"enabled"`
	// Threshold is the score within Window at which an address is banned.
	Threshold int           `yaml:"threshold"`
	Window    time.Duration `yaml:"window"`
	// LoginFailedScore is added per refused password; NoLoginScore per connection that ends
	// without logging in or trying a password.
	LoginFailedScore int `yaml:"login_failed_score"`
	NoLoginScore     int `yaml:"no_login_score"`
	// BanTime is the first ban; each ban still remembered doubles the next, up to MaxBanTime.
	BanTime    time.Duration `yaml:"ban_time"`
	MaxBanTime time.Duration `yaml:"max_ban_time"`
	// Safelist are CIDRs or addresses never banned nor limited per address.
	Safelist []string `yaml:"safelist"`
	// MaxTracked bounds the addresses whose score is kept.
	MaxTracked int `yaml:"max_tracked"`
}

// SafelistPrefixes parses Safelist; Validate reports a malformed entry.
func (d Defender) SafelistPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(d.Safelist))
	for _, s := range d.Safelist {
		p, err := ParseCIDR(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// FTPTLS configures FTPS.
type FTPTLS struct {
	// Mode: required (AUTH TLS before login, the default), optional (plaintext logins accepted:
	// legacy clients only) or none.
	Mode     string `yaml:"mode"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CertPEM and KeyPEM are the certificate chain and key as PEM text instead of files, e.g.
	// "${FERRY_FTPS_CERT}" from a secret in the environment.
	CertPEM string `yaml:"cert_pem"`
	KeyPEM  string `yaml:"key_pem"`
	// DevSelfSigned generates a self-signed certificate at start when no files are configured.
	DevSelfSigned bool `yaml:"dev_self_signed"`
}

// PassiveRange parses PassivePorts; (0, 0) when empty. Validate reports a malformed range.
func (f FTP) PassiveRange() (first, last int, err error) {
	if f.PassivePorts == "" {
		return 0, 0, nil
	}
	a, b, ok := strings.Cut(f.PassivePorts, "-")
	if !ok {
		return 0, 0, fmt.Errorf("want first-last, e.g. 50000-50099, got %q", f.PassivePorts)
	}
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || first < 1024 || last > 65535 || first > last {
		return 0, 0, fmt.Errorf("want first-last between 1024 and 65535, e.g. 50000-50099, got %q", f.PassivePorts)
	}
	return first, last, nil
}

// Events configures the gateway's own events.
type Events struct {
	EventBridge EventBridge `yaml:"eventbridge"`
}

// EventBridge is where PutEvents sends the gateway's events.
type EventBridge struct {
	Bus       string `yaml:"bus"`        // event bus name or ARN ("default"); empty disables
	Region    string `yaml:"region"`     // empty = storage.s3.region
	Endpoint  string `yaml:"endpoint"`   // empty = AWS; a VPC endpoint or test server
	QueueSize int    `yaml:"queue_size"` // events held while EventBridge is slow; beyond it they are dropped (and counted)
}

// Recovery configures the upload journal: each replica records its multipart uploads in flight
// under Prefix in storage.s3.bucket, and aborts (with a Transfer Failed event) those of a replica
// whose heartbeat is older than StaleAfter.
type Recovery struct {
	Prefix     string        `yaml:"prefix"`     // "" disables the journal and recovery
	ReplicaID  string        `yaml:"replica_id"` // "" = random per start; fixed: one process per id
	Heartbeat  time.Duration `yaml:"heartbeat"`
	StaleAfter time.Duration `yaml:"stale_after"`
}

// Embedded configures the parts of the system that stand in for AWS on one machine.
type Embedded struct {
	S3 EmbeddedS3 `yaml:"s3"`
	// Events is the in-process event bus (S3's events and the gateway's); needs s3.
	Events EmbeddedEvents `yaml:"events"`
	// Notifications is the local sink standing in for SNS.
	Notifications EmbeddedNotifications `yaml:"notifications"`
	// Pipeline runs the same transform and notify handlers as the Lambdas, as bus targets.
	Pipeline EmbeddedPipeline `yaml:"pipeline"`
}

// EmbeddedPipeline configures the local pipeline.
type EmbeddedPipeline struct {
	Routes string `yaml:"routes"` // routes file (configs/pipeline.yaml); empty disables the pipeline
}

// EmbeddedEvents configures the local event bus.
type EmbeddedEvents struct {
	Dir string `yaml:"dir"` // durable event log, delivery cursors, dead letters; empty disables the bus
}

// EmbeddedNotifications configures the local notification sink.
type EmbeddedNotifications struct {
	Outbox  string `yaml:"outbox"`  // JSON lines file; empty disables notifications
	Webhook string `yaml:"webhook"` // optional URL receiving each notification as a POST
}

// EmbeddedS3 is the local S3-compatible endpoint. When Listen is set the gateway stores into
// it (storage.s3.endpoint must then be empty) with these credentials.
type EmbeddedS3 struct {
	Listen    string   `yaml:"listen"`   // e.g. 127.0.0.1:9000; empty disables
	DataDir   string   `yaml:"data_dir"` // relative to the config file's folder
	AccessKey string   `yaml:"access_key"`
	Secret    string   `yaml:"secret"`
	Buckets   []string `yaml:"buckets"` // created at start; storage.s3.bucket is always created
	// KeyEncryptionKey (32 bytes, base64 or hex; e.g. "${FERRY_S3_KEY_ENCRYPTION_KEY}") seals
	// the users' S3 secrets in the users file (`ferry user s3-key add`); empty: users' S3 keys
	// are refused.
	KeyEncryptionKey string `yaml:"key_encryption_key"`
	// AbortIncompleteUploadsAfter aborts multipart uploads initiated longer ago, as S3's
	// AbortIncompleteMultipartUpload lifecycle rule does; 0 never does.
	AbortIncompleteUploadsAfter time.Duration `yaml:"abort_incomplete_uploads_after"`
}

// Enabled reports whether the embedded endpoint runs.
func (e EmbeddedS3) Enabled() bool { return e.Listen != "" }

// Limits bound the resources clients can make the gateway hold.
type Limits struct {
	// TransferMemory is the hard budget for transfer memory, for the whole process: S3 part
	// buffers of uploads, SFTP reorder windows and download read-ahead, together. A transfer
	// that needs memory while it is spent waits (holding back its client) up to
	// TransferMemoryWait, then fails cleanly: an upload is aborted and leaves nothing.
	TransferMemory Size `yaml:"transfer_memory"`
	// TransferMemoryPerUser is the most of it one user's transfers hold at once, so one user
	// cannot starve the others; 0 = a quarter of TransferMemory. It must hold a part
	// (storage.s3.part_size) and a download's 4MiB read-ahead.
	TransferMemoryPerUser Size          `yaml:"transfer_memory_per_user"`
	TransferMemoryWait    time.Duration `yaml:"transfer_memory_wait"`
	// UploadsPerSession limits the uploads open at once in one SFTP connection (all its
	// channels); more are refused. FTP runs one transfer at a time per control connection.
	UploadsPerSession int `yaml:"uploads_per_session"`
	// ChannelsPerConnection limits the SSH channels open at once in one connection.
	ChannelsPerConnection int `yaml:"channels_per_connection"`
}

// PerUser is the effective per-user share of the transfer memory.
func (l Limits) PerUser() Size {
	if l.TransferMemoryPerUser == 0 {
		return l.TransferMemory / 4
	}
	return l.TransferMemoryPerUser
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug|info|warn|error
	Format string `yaml:"format"` // text|json
}

// Default returns the configuration used for every key the file leaves out.
func Default() *Config {
	return &Config{
		Listen: Listen{SFTP: "127.0.0.1:2222", Metrics: "127.0.0.1:9100"},
		Storage: Storage{S3: S3{
			Bucket:        "",
			Region:        "us-east-1",
			PartSize:      5 * MiB,
			Concurrency:   4,
			MaxRenameKeys: 1000,
			StallTimeout:  30 * time.Second,
		}},
		HostKeys: HostKeys{
			Paths:    []string{"keys/ssh_host_ed25519_key", "keys/ssh_host_rsa_key"},
			Generate: true,
		},
		UsersFile:         "users.yaml",
		UsersPollInterval: 5 * time.Second,
		MemoryLimit:       24 * MiB,
		DrainTimeout:      30 * time.Second,
		Limits: Limits{
			TransferMemory:        256 * MiB,
			TransferMemoryWait:    30 * time.Second,
			UploadsPerSession:     8,
			ChannelsPerConnection: 10,
		},
		SFTP: SFTP{
			IdleTimeout:      15 * time.Minute,
			LoginTimeout:     30 * time.Second,
			MaxSessions:      256,
			WriteWindow:      16 * MiB,
			WriteWaitTimeout: 30 * time.Second,
		},
		FTP: FTP{
			PassivePorts:    "50000-50099",
			ImplicitTLSPort: 990,
			TLS:             FTPTLS{Mode: "required"},
			IdleTimeout:     5 * time.Minute,
			LoginTimeout:    30 * time.Second,
			MaxClients:      256,
		},
		Connections: Connections{MaxPerIP: 32, MaxUnauthenticatedPerIP: 16, MaxUnauthenticated: 128},
		Defender: Defender{
			Enabled:          true,
			Threshold:        20,
			Window:           10 * time.Minute,
			LoginFailedScore: 4,
			NoLoginScore:     1,
			BanTime:          15 * time.Minute,
			MaxBanTime:       24 * time.Hour,
			MaxTracked:       100_000,
		},
		Events:   Events{EventBridge: EventBridge{QueueSize: 10000}},
		Recovery: Recovery{Prefix: ".ferry/uploads/", Heartbeat: 30 * time.Second, StaleAfter: 5 * time.Minute},
		Embedded: Embedded{S3: EmbeddedS3{AbortIncompleteUploadsAfter: 7 * 24 * time.Hour}},
		Log:      Log{Level: "info", Format: "text"},
	}
}

// Load reads the configuration file at path (see Read) and validates it. The error lists every
// problem, one per line, as "file:line: key: reason".
func Load(path string) (*Config, error) {
	c, err := Read(path, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Read reads and strictly decodes the file at path over the defaults, expanding ${NAME} with
// lookup (os.LookupEnv when nil) and resolving relative paths against the file's folder, without
// validating. Tools that only need part of a configuration (e.g. `ferry user` wanting the users
// file) can pass a lookup that tolerates missing variables.
func Read(path string, lookup func(string) (string, bool)) (*Config, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := Default()
	pos, err := strictyaml.Decode(path, data, c, strictyaml.Options{Lookup: lookup})
	if err != nil {
		return nil, err
	}
	c.file, c.pos = path, pos
	dir := filepath.Dir(path)
	if _, _, isS3 := ParseS3URL(c.UsersFile); !isS3 {
		c.UsersFile = resolve(dir, c.UsersFile)
	}
	paths := make([]string, len(c.HostKeys.Paths))
	for i, p := range c.HostKeys.Paths {
		paths[i] = resolve(dir, p)
	}
	c.HostKeys.Paths = paths
	c.FTP.TLS.CertFile = resolve(dir, c.FTP.TLS.CertFile)
	c.FTP.TLS.KeyFile = resolve(dir, c.FTP.TLS.KeyFile)
	c.Embedded.S3.DataDir = resolve(dir, c.Embedded.S3.DataDir)
	c.Embedded.Events.Dir = resolve(dir, c.Embedded.Events.Dir)
	c.Embedded.Notifications.Outbox = resolve(dir, c.Embedded.Notifications.Outbox)
	c.Embedded.Pipeline.Routes = resolve(dir, c.Embedded.Pipeline.Routes)
	return c, nil
}

// ParseS3URL splits "s3://bucket/key". ok is false for anything not starting with "s3://" (a
// local path); bucket or key may then still be empty or invalid, which Validate reports.
func ParseS3URL(s string) (bucket, key string, ok bool) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", false
	}
	bucket, key, _ = strings.Cut(rest, "/")
	return bucket, key, true
}

func resolve(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// File returns the file the configuration was read from ("" when built in code).
func (c *Config) File() string { return c.file }

// NewLogger returns a logger writing to w at the configured level and format. Call it on a
// validated configuration; unknown values fall back to info and text.
func (l Log) NewLogger(w io.Writer) *slog.Logger {
	// Every line passes through redact: a pre-signed URL's signature (in a debug line, an SDK
	// error) is a bearer credential.
	opts := &slog.HandlerOptions{Level: l.level(), ReplaceAttr: redact.ReplaceAttr}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func (l Log) level() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
