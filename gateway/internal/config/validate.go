package config

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/s3keys"
	"github.com/ferrygw/ferry/pipeline/strictyaml"
)

// Validate checks the configuration and reports every problem at once (errors.Join of
// *strictyaml.Problem), each with the file and line of the offending key when it was read from
// a file.
func (c *Config) Validate() error {
	v := &validator{c: c}

	l := c.Listen
	v.addr("listen.sftp", l.SFTP)
	v.addr("listen.ftp", l.FTP)
	v.addr("listen.ftps_implicit", l.FTPSImplicit)
	v.addr("listen.metrics", l.Metrics)
	v.addr("listen.health", l.Health)
	v.addr("listen.pprof", l.PProf)
	if l.PProf != "" && !IsLoopback(l.PProf) {
		v.errorf("listen.pprof", "profiles are served on loopback only (e.g. 127.0.0.1:6060), got %q", l.PProf)
	}
	if l.SFTP == "" && l.FTP == "" && l.FTPSImplicit == "" {
		v.errorf("listen", "no file protocol is enabled: set listen.sftp, listen.ftp or listen.ftps_implicit")
	}
	seen := map[string]string{}
	for _, a := range []struct{ key, addr string }{{"listen.sftp", l.SFTP}, {"listen.ftp", l.FTP}, {"listen.ftps_implicit", l.FTPSImplicit}, {"listen.metrics", l.Metrics}, {"listen.health", l.Health}, {"listen.pprof", l.PProf}} {
		if a.addr == "" || strings.HasSuffix(a.addr, ":0") {
			continue
		}
		if other, dup := seen[a.addr]; dup {
			v.errorf(a.key, "%q is also used by %s", a.addr, other)
		}
		seen[a.addr] = a.key
	}

	s := c.Storage.S3
	switch {
	case s.Bucket == "":
		v.errorf("storage.s3.bucket", "required")
	default:
		if msg := bucketProblem(s.Bucket); msg != "" {
			v.errorf("storage.s3.bucket", "%s", msg)
		}
	}
	if s.Endpoint != "" {
		u, err := url.Parse(s.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			v.errorf("storage.s3.endpoint", "must be an http:// or https:// URL such as http://127.0.0.1:7070, got %q", s.Endpoint)
		}
	}
	if s.Region == "" {
		v.errorf("storage.s3.region", "required (e.g. us-east-1)")
	}
	if s.PartSize < 5*MiB || s.PartSize > 5*GiB {
		v.errorf("storage.s3.part_size", "must be between 5MiB and 5GiB (S3 limits), got %s", s.PartSize)
	}
	if s.Concurrency < 1 || s.Concurrency > 64 {
		v.errorf("storage.s3.concurrency", "must be between 1 and 64, got %d", s.Concurrency)
	}
	if s.StallTimeout < 0 {
		v.errorf("storage.s3.stall_timeout", "must not be negative (0 disables it), got %s", s.StallTimeout)
	} else if s.StallTimeout > 0 && s.StallTimeout < time.Second {
		v.errorf("storage.s3.stall_timeout", "must be at least 1s (or 0 to disable), got %s", s.StallTimeout)
	}
	if c.DrainTimeout < 0 || c.DrainTimeout > time.Hour {
		v.errorf("drain_timeout", "must be between 0 (abort at once) and 1h, got %s", c.DrainTimeout)
	}
	if s.MaxRenameKeys < 0 {
		v.errorf("storage.s3.max_rename_keys", "must not be negative (0 refuses every non-empty directory rename), got %d", s.MaxRenameKeys)
	}

	h := c.HostKeys
	if l.SFTP != "" && len(h.Paths) == 0 && strings.TrimSpace(h.PEM) == "" {
		v.errorf("host_keys", "SFTP needs host keys: set host_keys.paths or host_keys.pem")
	}
	for i, p := range h.Paths {
		if strings.TrimSpace(p) == "" {
			v.errorf(fmt.Sprintf("host_keys.paths[%d]", i), "empty path")
		}
	}
	if msg := pemProblem(h.PEM, "PRIVATE KEY", "private keys"); msg != "" {
		v.errorf("host_keys.pem", "%s", msg)
	}

	if bucket, key, isS3 := ParseS3URL(c.UsersFile); isS3 {
		if msg := bucketProblem(bucket); msg != "" {
			v.errorf("users_file", "%s (write s3://BUCKET/KEY)", msg)
		}
		if key == "" || strings.HasSuffix(key, "/") {
			v.errorf("users_file", "%q names no object: write s3://BUCKET/KEY, e.g. s3://acme-ferry/config/users.yaml", c.UsersFile)
		}
	} else if c.UsersFile == "" {
		v.errorf("users_file", "required")
	}
	if c.UsersPollInterval < time.Second {
		v.errorf("users_poll_interval", "must be at least 1s, got %s", c.UsersPollInterval)
	}
	v.proxyProtocol()

	f := c.SFTP
	if f.IdleTimeout < 0 {
		v.errorf("sftp.idle_timeout", "must not be negative (0 = never), got %s", f.IdleTimeout)
	}
	if f.LoginTimeout <= 0 {
		v.errorf("sftp.login_timeout", "must be positive, got %s", f.LoginTimeout)
	}
	if f.MaxSessions < 1 {
		v.errorf("sftp.max_sessions", "must be at least 1, got %d", f.MaxSessions)
	}
	// OpenSSH's sftp keeps 64 requests of 32KiB in flight: a smaller window would stall it.
	if f.WriteWindow < 2*MiB || f.WriteWindow > 1*GiB {
		v.errorf("sftp.write_window", "must be between 2MiB and 1GiB, got %s", f.WriteWindow)
	}
	if f.WriteWaitTimeout <= 0 {
		v.errorf("sftp.write_wait_timeout", "must be positive, got %s", f.WriteWaitTimeout)
	}

	v.ftp()
	v.defender()
	v.embedded()
	if eb := c.Events.EventBridge; eb.Bus != "" {
		if c.Embedded.Events.Dir != "" {
			v.errorf("events.eventbridge.bus", "the embedded event bus (embedded.events.dir) already receives the gateway's events: set one of them")
		}
		if eb.QueueSize < 1 {
			v.errorf("events.eventbridge.queue_size", "must be at least 1, got %d", eb.QueueSize)
		}
		if eb.Endpoint != "" {
			if u, err := url.Parse(eb.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.errorf("events.eventbridge.endpoint", "must be an http:// or https:// URL, got %q", eb.Endpoint)
			}
		}
	}

	if r := c.Recovery; r.Prefix != "" {
		if !strings.HasSuffix(r.Prefix, "/") || strings.HasPrefix(r.Prefix, "/") {
			v.errorf("recovery.prefix", "must end with / and not start with one (e.g. .ferry/uploads/), got %q", r.Prefix)
		}
		if r.Heartbeat < time.Second {
			v.errorf("recovery.heartbeat", "must be at least 1s, got %s", r.Heartbeat)
		}
		if r.StaleAfter < 3*r.Heartbeat {
			v.errorf("recovery.stale_after", "must be at least three heartbeats (%s), got %s: a live replica must not look gone", 3*r.Heartbeat, r.StaleAfter)
		}
		for _, r := range r.ReplicaID {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				v.errorf("recovery.replica_id", "may only hold letters, digits, '-', '_' and '.'")
				break
			}
		}
		if len(r.ReplicaID) > 64 {
			v.errorf("recovery.replica_id", "must be at most 64 characters")
		}
	}

	if c.MemoryLimit < 0 {
		v.errorf("memory_limit", "must not be negative, got %s", c.MemoryLimit)
	}
	v.limits()
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.errorf("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		v.errorf("log.format", "must be text or json, got %q", c.Log.Format)
	}
	return strictyaml.Join(v.problems)
}

// readAhead is a download's read-ahead ring (s3store's default ReadBuffer), which every user's
// share must hold beside a part.
const readAhead = 4 * MiB

func (v *validator) limits() {
	l, part := v.c.Limits, v.c.Storage.S3.PartSize
	if l.TransferMemory < 16*MiB {
		v.errorf("limits.transfer_memory", "must be at least 16MiB, got %s", l.TransferMemory)
	} else if l.TransferMemoryPerUser < 0 || l.TransferMemoryPerUser > l.TransferMemory {
		v.errorf("limits.transfer_memory_per_user", "must be between 0 (a quarter of limits.transfer_memory) and limits.transfer_memory (%s), got %s",
			l.TransferMemory, l.TransferMemoryPerUser)
	} else if need := (part+256*KiB-1)/(256*KiB)*(256*KiB) + readAhead; part >= 5*MiB && l.PerUser() < need {
		key := "limits.transfer_memory_per_user"
		if l.TransferMemoryPerUser == 0 {
			key = "limits.transfer_memory" // the share is a quarter of it
		}
		v.errorf(key, "each user's share (%s) must hold a part of storage.s3.part_size (%s) and a download's read-ahead (%s): at least %s",
			l.PerUser(), part, Size(readAhead), need)
	}
	if l.TransferMemoryWait <= 0 {
		v.errorf("limits.transfer_memory_wait", "must be positive, got %s", l.TransferMemoryWait)
	}
	if l.UploadsPerSession < 1 {
		v.errorf("limits.uploads_per_session", "must be at least 1, got %d", l.UploadsPerSession)
	}
	if l.ChannelsPerConnection < 1 {
		v.errorf("limits.channels_per_connection", "must be at least 1, got %d", l.ChannelsPerConnection)
	}
}

func (v *validator) ftp() {
	f, l := v.c.FTP, v.c.Listen
	if _, _, err := f.PassiveRange(); err != nil {
		v.errorf("ftp.passive_ports", "%v", err)
	}
	if f.IdleTimeout < 0 {
		v.errorf("ftp.idle_timeout", "must not be negative (0 = the default, 5m), got %s", f.IdleTimeout)
	}
	if f.MaxClients < 0 {
		v.errorf("ftp.max_clients", "must not be negative (0 = no limit), got %d", f.MaxClients)
	}
	if f.LoginTimeout <= 0 {
		v.errorf("ftp.login_timeout", "must be positive, got %s", f.LoginTimeout)
	}
	t := f.TLS
	switch t.Mode {
	case "required", "optional", "none":
	default:
		v.errorf("ftp.tls.mode", "must be required, optional or none, got %q", t.Mode)
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.errorf("ftp.tls", "cert_file and key_file go together")
	}
	if (t.CertPEM == "") != (t.KeyPEM == "") {
		v.errorf("ftp.tls", "cert_pem and key_pem go together")
	}
	if t.CertFile != "" && t.CertPEM != "" {
		v.errorf("ftp.tls", "set cert_file and key_file, or cert_pem and key_pem, not both")
	}
	if msg := pemProblem(t.CertPEM, "CERTIFICATE", "a certificate chain"); msg != "" {
		v.errorf("ftp.tls.cert_pem", "%s", msg)
	}
	if msg := pemProblem(t.KeyPEM, "PRIVATE KEY", "a private key"); msg != "" {
		v.errorf("ftp.tls.key_pem", "%s", msg)
	}
	if f.ImplicitTLSPort < 0 || f.ImplicitTLSPort > 65535 {
		v.errorf("ftp.implicit_tls_port", "must be a port (0 = none), got %d", f.ImplicitTLSPort)
	}
	if l.FTP == "" && l.FTPSImplicit == "" {
		return
	}
	if t.Mode != "none" && t.CertFile == "" && t.CertPEM == "" && !t.DevSelfSigned {
		v.errorf("ftp.tls", "FTPS needs cert_file and key_file, or cert_pem and key_pem (or dev_self_signed: true for development only)")
	}
	if l.FTPSImplicit != "" && t.Mode == "none" {
		v.errorf("listen.ftps_implicit", "implicit FTPS needs ftp.tls.mode required or optional")
	}
}

// proxyProtocol checks listen.proxy_protocol and what it needs from FTP: behind the load
// balancer every FTP port reaches one listener, told apart by the port the client dialed.
func (v *validator) proxyProtocol() {
	p, f := v.c.Listen.ProxyProtocol, v.c.FTP
	for i, s := range p.Trusted {
		if _, err := ParseCIDR(s); err != nil {
			v.errorf(fmt.Sprintf("listen.proxy_protocol.trusted[%d]", i), "%v", err)
		}
	}
	if p.Enabled() && v.c.Listen.FTP == "" && v.c.Listen.FTPSImplicit != "" {
		v.errorf("listen.ftp", "required with listen.proxy_protocol and listen.ftps_implicit: behind the load balancer passive data connections arrive on listen.ftp")
	}
	if !p.Enabled() || v.c.Listen.FTP == "" {
		return
	}
	first, last, err := f.PassiveRange()
	if err != nil {
		return // reported under ftp.passive_ports
	}
	if first == 0 {
		v.errorf("ftp.passive_ports", "required with listen.proxy_protocol: the load balancer forwards this range to the FTP listener, and a connection to one of its ports is a passive data connection")
	}
	if port := f.ImplicitTLSPort; port != 0 && port >= first && port <= last {
		v.errorf("ftp.implicit_tls_port", "%d is inside ftp.passive_ports %s", port, f.PassivePorts)
	}
}

// defender checks connections and defender.
func (v *validator) defender() {
	c := v.c.Connections
	for _, n := range []struct {
		key string
		val int
	}{{"connections.max_per_ip", c.MaxPerIP}, {"connections.max_unauthenticated_per_ip", c.MaxUnauthenticatedPerIP},
		{"connections.max_unauthenticated", c.MaxUnauthenticated}} {
		if n.val < 0 {
			v.errorf(n.key, "must not be negative (0 = no limit), got %d", n.val)
		}
	}
	if c.MaxPerIP > 0 && c.MaxUnauthenticatedPerIP > c.MaxPerIP {
		v.errorf("connections.max_unauthenticated_per_ip", "%d is above connections.max_per_ip %d: it could never be reached", c.MaxUnauthenticatedPerIP, c.MaxPerIP)
	}
	d := v.c.Defender
	for i, s := range d.Safelist {
		if _, err := ParseCIDR(s); err != nil {
			v.errorf(fmt.Sprintf("defender.safelist[%d]", i), "%v", err)
		}
	}
	if !d.Enabled {
		return
	}
	if d.Threshold < 1 {
		v.errorf("defender.threshold", "must be at least 1, got %d", d.Threshold)
	}
	if d.Window <= 0 {
		v.errorf("defender.window", "must be positive, got %s", d.Window)
	}
	if d.LoginFailedScore < 0 {
		v.errorf("defender.login_failed_score", "must not be negative, got %d", d.LoginFailedScore)
	}
	if d.NoLoginScore < 0 {
		v.errorf("defender.no_login_score", "must not be negative, got %d", d.NoLoginScore)
	}
	if d.LoginFailedScore == 0 && d.NoLoginScore == 0 {
		v.errorf("defender", "login_failed_score and no_login_score are both 0: nothing could be banned (set enabled: false to say so)")
	}
	if d.BanTime <= 0 {
		v.errorf("defender.ban_time", "must be positive, got %s", d.BanTime)
	}
	if d.MaxBanTime < d.BanTime {
		v.errorf("defender.max_ban_time", "%s is shorter than defender.ban_time %s", d.MaxBanTime, d.BanTime)
	}
	if d.MaxTracked < 1 {
		v.errorf("defender.max_tracked", "must be at least 1, got %d", d.MaxTracked)
	}
}

func (v *validator) embedded() {
	e := v.c.Embedded.S3
	v.addr("embedded.s3.listen", e.Listen)
	if w := v.c.Embedded.Notifications.Webhook; w != "" {
		if u, err := url.Parse(w); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errorf("embedded.notifications.webhook", "must be an http:// or https:// URL, got %q", w)
		}
	}
	if p := v.c.Embedded.Pipeline.Routes; p != "" {
		if v.c.Embedded.Events.Dir == "" {
			v.errorf("embedded.pipeline.routes", "the local pipeline runs on the event bus: set embedded.events.dir")
		}
		if v.c.Embedded.Notifications.Outbox == "" {
			v.errorf("embedded.pipeline.routes", "the local pipeline notifies through the local sink: set embedded.notifications.outbox")
		}
	}
	if !e.Enabled() {
		if v.c.Embedded.Events.Dir != "" {
			v.errorf("embedded.events.dir", "the local event bus needs embedded.s3 (its events come from the embedded endpoint)")
		}
		return
	}
	if v.c.Storage.S3.Endpoint != "" {
		v.errorf("storage.s3.endpoint", "must be empty when embedded.s3 runs: the gateway stores into the embedded endpoint")
	}
	if e.DataDir == "" {
		v.errorf("embedded.s3.data_dir", "required when embedded.s3.listen is set")
	}
	if e.AccessKey == "" || e.Secret == "" {
		v.errorf("embedded.s3", "access_key and secret are required (clients sign with them)")
	}
	if e.AbortIncompleteUploadsAfter < 0 {
		v.errorf("embedded.s3.abort_incomplete_uploads_after", "must not be negative (0 = never), got %s", e.AbortIncompleteUploadsAfter)
	}
	for i, b := range e.Buckets {
		if msg := bucketProblem(b); msg != "" {
			v.errorf(fmt.Sprintf("embedded.s3.buckets[%d]", i), "%s", msg)
		}
	}
	if e.KeyEncryptionKey != "" {
		if _, err := s3keys.ParseKEK(e.KeyEncryptionKey); err != nil {
			v.errorf("embedded.s3.key_encryption_key", "%v", err) // never the value: it is a secret
		}
	}
	if l := v.c.Listen; e.Listen == l.Metrics || e.Listen == l.Health || e.Listen == l.SFTP || e.Listen == l.FTP {
		v.errorf("embedded.s3.listen", "%q is also used by another listener", e.Listen)
	}
}

type validator struct {
	c        *Config
	problems []error
}

func (v *validator) errorf(path, format string, args ...any) {
	v.problems = append(v.problems, &strictyaml.Problem{
		File: v.c.file,
		Line: v.c.pos.Line(path),
		Path: path,
		Msg:  fmt.Sprintf(format, args...),
	})
}

// addr checks an optional host:port listening address.
func (v *validator) addr(path, a string) {
	if a == "" {
		return
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		v.errorf(path, "must be host:port (e.g. 127.0.0.1:2222 or :2222), got %q", a)
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		v.errorf(path, "invalid port %q", port)
	}
	if strings.ContainsAny(host, " /") {
		v.errorf(path, "invalid host %q", host)
	}
}

// IsLoopback reports whether the host of a host:port listening address is a loopback address
// or "localhost"; an empty host (every interface) is not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// CheckBucketName reports whether name follows S3's bucket naming rules.
func CheckBucketName(name string) error {
	if msg := bucketProblem(name); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// bucketProblem applies S3's bucket naming rules.
func bucketProblem(b string) string {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Sprintf("bucket name %q must be 3 to 63 characters", b)
	}
	for _, r := range b {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Sprintf("bucket name %q may only hold lower-case letters, digits, '-' and '.'", b)
		}
	}
	first, last := b[0], b[len(b)-1]
	if first == '-' || first == '.' || last == '-' || last == '.' || strings.Contains(b, "..") {
		return fmt.Sprintf("bucket name %q must start and end with a letter or digit, without \"..\"", b)
	}
	return ""
}

// pemProblem checks that text is empty or only PEM blocks, of which at least one has a type
// ending in want ("PRIVATE KEY", "CERTIFICATE"); what names them in messages. What they hold is
// parsed when they are loaded (packages hostkeys and ftpd; `ferry check` does it). Messages never
// quote the text: it is a secret.
func pemProblem(text, want, what string) string {
	rest := bytes.TrimSpace([]byte(text))
	found := len(rest) == 0
	for len(rest) > 0 {
		block, r := pem.Decode(rest)
		if block == nil {
			return fmt.Sprintf("must hold %s as PEM text (-----BEGIN ... %s-----)", what, want)
		}
		found = found || strings.HasSuffix(block.Type, want)
		rest = bytes.TrimSpace(r)
	}
	if !found {
		return fmt.Sprintf("must hold %s as PEM text: it has no -----BEGIN ... %s----- block", what, want)
	}
	return ""
}
