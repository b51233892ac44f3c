// Package loadtest drives the real ferry binary with many SFTP and FTP clients over versitygw,
// optionally through a fault-injecting proxy, and judges every transfer against what S3 really
// holds: landed byte-exact, failed visibly (the client saw an error and nothing was stored),
// corrupted, or partial (an object or a pending multipart upload left by a transfer the client
// saw fail). Its tests are the fault test (TestS3Faults, in `make test`) and the load test
// (TestLoad, `make loadtest`).
package loadtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/ferryproc"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/faultproxy"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// Options shape the gateway under test.
type Options struct {
	Users        int           // users user0..userN-1, password "pw-<name>" (default 1)
	Proxy        bool          // S3 through a fault-injecting proxy
	Seed         uint64        // the proxy's random choices
	StallTimeout time.Duration // storage.s3.stall_timeout (default 30s)
	MaxSessions  int           // sftp.max_sessions and ftp.max_clients (default 256)
	Extra        string        // more top-level YAML
}

// Env is a running gateway with its S3 server, optional proxy and addresses.
type Env struct {
	S3      *s3test.Server
	Proxy   *faultproxy.Proxy // nil without Options.Proxy
	Proc    *ferryproc.Process
	SFTP    string
	FTP     string
	Metrics string
	Health  string
	Users   []string
}

// Start runs versitygw, the proxy if asked, and `ferry serve` until the test ends.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	if o.Users <= 0 {
		o.Users = 1
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = 30 * time.Second
	}
	if o.MaxSessions == 0 {
		o.MaxSessions = 256
	}
	e := &Env{S3: s3test.Start(t)}
	endpoint := e.S3.Endpoint
	if o.Proxy {
		e.Proxy = faultproxy.Start(t, endpoint, o.Seed)
		endpoint = e.Proxy.URL
	}
	bin := ferryproc.Build(t)
	dir := t.TempDir()
	var users strings.Builder
	users.WriteString("users:\n")
	for i := range o.Users {
		name := fmt.Sprintf("user%d", i)
		// bcrypt's cheapest cost: hundreds of logins must not be the test's CPU.
		h, err := bcrypt.GenerateFromPassword([]byte("pw-"+name), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&users, "  - name: %s\n    password_hash: %q\n    home: home/%s/\n    permissions: [\"*\"]\n", name, h, name)
		e.Users = append(e.Users, name)
	}
	write(t, filepath.Join(dir, "users.yaml"), users.String())
	e.SFTP, e.FTP, e.Metrics, e.Health = testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t)
	cfg := filepath.Join(dir, "ferry.yaml")
	write(t, cfg, fmt.Sprintf(`listen:
  sftp: %q
  ftp: %q
  metrics: %q
  health: %q
storage:
  s3:
    bucket: %s
    endpoint: %s
    region: %s
    path_style: true
    part_size: 5MiB
    concurrency: 2
    stall_timeout: %s
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
sftp:
  max_sessions: %d
ftp:
  passive_ports: ""
  max_clients: %d
  tls: {mode: none}
# Every session of a run logs in at the same moment; with bcrypt checked a few at a time, more
# than the default 128 wait for their turn at once.
connections:
  max_unauthenticated: %d
log:
  level: info
  format: json
%s
`, e.SFTP, e.FTP, e.Metrics, e.Health, e.S3.Bucket, endpoint, e.S3.Region, o.StallTimeout, o.MaxSessions, o.MaxSessions, o.MaxSessions, o.Extra))
	e.Proc = ferryproc.Start(t, bin, cfg, "AWS_ACCESS_KEY_ID="+e.S3.AccessKey, "AWS_SECRET_ACCESS_KEY="+e.S3.Secret)
	e.Proc.WaitListening(t, e.SFTP, e.FTP, e.Metrics, e.Health)
	return e
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Password is the password of user name.
func Password(name string) string { return "pw-" + name }

// Client is one protocol session of one user. Its methods reconnect after a failure.
type Client interface {
	Upload(name string, data []byte) error
	Download(name string) ([]byte, error)
	Close()
}

// Partner is the loopback source address of client n: clients spread over 127.0.0.2–127.0.0.61
// as partners come from their own addresses, so the gateway's per-address limits and defender
// see a crowd of partners rather than one address opening hundreds of connections.
func Partner(n int) string { return fmt.Sprintf("127.0.0.%d", 2+n%60) }

// dialer dials from the source address from ("" = any).
func dialer(from string) *net.Dialer {
	d := &net.Dialer{Timeout: 30 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return d
}

// SFTPClient is a pkg/sftp client (concurrent, out-of-order writes and reads, as OpenSSH).
type SFTPClient struct {
	Addr, User string
	From       string // source address (Partner); "" = any
	conn       *ssh.Client
	c          *sftp.Client
}

func (s *SFTPClient) connect() error {
	if s.c != nil {
		return nil
	}
	nc, err := dialer(s.From).Dial("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("sftp login: %w", err)
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, s.Addr, &ssh.ClientConfig{User: s.User,
		Auth: []ssh.AuthMethod{ssh.Password(Password(s.User))}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second})
	if err != nil {
		nc.Close()
		return fmt.Errorf("sftp login: %w", err)
	}
	conn := ssh.NewClient(cc, chans, reqs)
	c, err := sftp.NewClient(conn, sftp.UseConcurrentWrites(true))
	if err != nil {
		conn.Close()
		return fmt.Errorf("sftp session: %w", err)
	}
	s.conn, s.c = conn, c
	return nil
}

// Close ends the session.
func (s *SFTPClient) Close() {
	if s.c != nil {
		s.c.Close()
		s.conn.Close()
		s.c, s.conn = nil, nil
	}
}

// Upload writes data to name and closes it; a failed close is a failed upload.
func (s *SFTPClient) Upload(name string, data []byte) (err error) {
	defer s.resetOn(&err)
	if err := s.connect(); err != nil {
		return err
	}
	f, err := s.c.Create(name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, bytes.NewReader(data)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Download reads name whole.
func (s *SFTPClient) Download(name string) (b []byte, err error) {
	defer s.resetOn(&err)
	if err := s.connect(); err != nil {
		return nil, err
	}
	f, err := s.c.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// resetOn drops the session after an error that may have broken it.
func (s *SFTPClient) resetOn(err *error) {
	if *err != nil {
		s.Close()
	}
}

// FTPClient is a jlaffaye/ftp client in passive mode over plain FTP.
type FTPClient struct {
	Addr, User string
	From       string // source address (Partner) of the control and data connections; "" = any
	c          *ftp.ServerConn
}

func (f *FTPClient) connect() error {
	if f.c != nil {
		return nil
	}
	c, err := ftp.Dial(f.Addr, ftp.DialWithTimeout(30*time.Second), ftp.DialWithDialFunc(dialer(f.From).Dial))
	if err != nil {
		return fmt.Errorf("ftp connect: %w", err)
	}
	if err := c.Login(f.User, Password(f.User)); err != nil {
		c.Quit()
		return fmt.Errorf("ftp login: %w", err)
	}
	f.c = c
	return nil
}

// Close ends the session.
func (f *FTPClient) Close() {
	if f.c != nil {
		f.c.Quit()
		f.c = nil
	}
}

// Upload sends data with STOR; the final reply decides.
func (f *FTPClient) Upload(name string, data []byte) (err error) {
	defer f.resetOn(&err)
	if err := f.connect(); err != nil {
		return err
	}
	return f.c.Stor(name, bytes.NewReader(data))
}

// Download reads name with RETR; the final reply (226, or a 4xx/5xx) decides.
func (f *FTPClient) Download(name string) (b []byte, err error) {
	defer f.resetOn(&err)
	if err := f.connect(); err != nil {
		return nil, err
	}
	r, err := f.c.Retr(name)
	if err != nil {
		return nil, err
	}
	b, rerr := io.ReadAll(r)
	if cerr := r.Close(); cerr != nil {
		return nil, cerr
	}
	return b, rerr
}

func (f *FTPClient) resetOn(err *error) {
	if *err != nil {
		f.Close()
	}
}

// Data returns n bytes determined by seed (cheap to make, so files need not be kept).
func Data(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), byte(seed >> 32)}))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Outcome is how one transfer ended, judged against S3.
type Outcome int

const (
	Landed        Outcome = iota // client success, S3 holds exactly what was sent
	FailedVisibly                // client error, nothing stored (uploads) / nothing wrong delivered (downloads)
	Corrupted                    // client success but the bytes differ (or are missing)
	Partial                      // client error but an object was left
)

func (o Outcome) String() string {
	return [...]string{"landed", "failed visibly", "corrupted", "partial"}[o]
}

// Tally counts outcomes per kind of transfer ("sftp upload", …) and keeps the first errors.
type Tally struct {
	mu     sync.Mutex
	counts map[string]*[4]int
	errs   map[string]int // client error texts (shortened) and how often
	bad    []string       // descriptions of corrupted and partial transfers
}

// NewTally returns an empty tally.
func NewTally() *Tally {
	return &Tally{counts: map[string]*[4]int{}, errs: map[string]int{}}
}

// Add records one transfer.
func (t *Tally) Add(kind string, o Outcome, clientErr error, detail string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.counts[kind]
	if c == nil {
		c = new([4]int)
		t.counts[kind] = c
	}
	c[o]++
	if clientErr != nil {
		msg := clientErr.Error()
		if len(msg) > 110 {
			msg = msg[:110] + "…"
		}
		t.errs[kind+": "+msg]++
	}
	if o == Corrupted || o == Partial {
		t.bad = append(t.bad, fmt.Sprintf("%s %s: %s", kind, o, detail))
	}
}

// Total sums an outcome over every kind (all kinds when o < 0: the number tried).
func (t *Tally) Total(o Outcome) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.counts {
		for i, v := range c {
			if o < 0 || Outcome(i) == o {
				n += v
			}
		}
	}
	return n
}

// Bad lists the corrupted and partial transfers.
func (t *Tally) Bad() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.bad...)
}

// Report is a table of the counts and the client errors seen.
func (t *Tally) Report() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	kinds := make([]string, 0, len(t.counts))
	for k := range t.counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	fmt.Fprintf(&b, "%-14s %6s %7s %14s %10s %8s\n", "", "tried", "landed", "failed visibly", "corrupted", "partial")
	for _, k := range kinds {
		c := t.counts[k]
		fmt.Fprintf(&b, "%-14s %6d %7d %14d %10d %8d\n", k, c[0]+c[1]+c[2]+c[3], c[0], c[1], c[2], c[3])
	}
	if len(t.errs) > 0 {
		b.WriteString("what the clients saw when a transfer failed:\n")
		msgs := make([]string, 0, len(t.errs))
		for m := range t.errs {
			msgs = append(msgs, m)
		}
		sort.Slice(msgs, func(i, j int) bool { return t.errs[msgs[i]] > t.errs[msgs[j]] })
		for _, m := range msgs {
			fmt.Fprintf(&b, "  %4d× %s\n", t.errs[m], m)
		}
	}
	return b.String()
}

// JudgeUpload classifies an upload of data to key from the client's result and what S3 holds
// (read directly from versitygw, not through the proxy).
func (e *Env) JudgeUpload(ctx context.Context, key string, data []byte, clientErr error) (Outcome, string) {
	got, err := e.object(ctx, key)
	switch {
	case clientErr == nil && err == nil && bytes.Equal(got, data):
		return Landed, ""
	case clientErr == nil:
		return Corrupted, fmt.Sprintf("%s: client saw success; S3 has %d bytes (%v), sent %d (sha256 %x)", key, len(got), err, len(data), sha256.Sum256(data))
	case err != nil:
		return FailedVisibly, ""
	case bytes.Equal(got, data):
		return Partial, fmt.Sprintf("%s: client saw %v, yet S3 holds the whole file", key, clientErr)
	}
	return Partial, fmt.Sprintf("%s: client saw %v, yet S3 holds %d bytes of the %d sent", key, clientErr, len(got), len(data))
}

// object reads key from versitygw itself; an error when there is none.
func (e *Env) object(ctx context.Context, key string) ([]byte, error) {
	out, err := e.S3.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: &e.S3.Bucket, Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// PendingUploads lists the multipart uploads left in the bucket.
func (e *Env) PendingUploads(ctx context.Context) ([]string, error) {
	out, err := e.S3.Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &e.S3.Bucket})
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys, nil
}

// Metric scrapes the gateway and sums a metric's series matching labels.
func (e *Env) Metric(ctx context.Context, name string, labels map[string]string) (float64, error) {
	fams, err := ferryproc.Scrape(ctx, e.Metrics)
	if err != nil {
		return 0, err
	}
	return ferryproc.Sum(fams, name, labels), nil
}

// httpGet returns the status and body of GET http://addr+path (0 when it failed).
func httpGet(addr, path string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
