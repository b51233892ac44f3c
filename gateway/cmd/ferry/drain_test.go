package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/ferryproc"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// eventSink answers PutEvents as EventBridge does and keeps the gateway's events.
type eventSink struct {
	mu      sync.Mutex
	entries []map[string]any
}

func (e *eventSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct{ Entries []map[string]any }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || r.Header.Get("X-Amz-Target") != "AWSEvents.PutEvents" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	e.entries = append(e.entries, in.Entries...)
	e.mu.Unlock()
	var ids []map[string]string
	for range in.Entries {
		ids = append(ids, map[string]string{"EventId": "id"})
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(map[string]any{"FailedEntryCount": 0, "Entries": ids})
}

// event returns the detail of the event of detailType about key, if any.
func (e *eventSink) event(detailType, key string) map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, en := range e.entries {
		if en["DetailType"] != detailType {
			continue
		}
		var d map[string]any
		if s, ok := en["Detail"].(string); ok && json.Unmarshal([]byte(s), &d) == nil && d["key"] == key {
			return d
		}
	}
	return nil
}

// slowReader yields n bytes of data at rate bytes per second, and reports progress: a client
// sending a file over a slow link. n < 0 never ends.
type slowReader struct {
	data     []byte
	n, off   int
	rate     int
	start    time.Time
	progress chan<- int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.n >= 0 && r.off >= r.n {
		return 0, io.EOF
	}
	if r.start.IsZero() {
		r.start = time.Now()
	}
	// Sleep until the bytes sent so far are due at rate.
	if due := r.start.Add(time.Duration(float64(r.off) / float64(r.rate) * float64(time.Second))); time.Until(due) > 0 {
		time.Sleep(time.Until(due))
	}
	k := min(len(p), 64<<10)
	if r.n >= 0 {
		k = min(k, r.n-r.off)
	}
	for i := range k {
		p[i] = r.data[(r.off+i)%len(r.data)]
	}
	r.off += k
	select {
	case r.progress <- r.off:
	default:
	}
	return k, nil
}

// TestSIGTERMDrains runs the real ferry binary with transfers in flight on SFTP and FTP, one of
// each that finishes within drain_timeout and one that does not, then sends SIGTERM: no new
// connection is accepted, /readyz says draining, the finishing transfers land byte-exact with a
// Transfer Completed event, the others are cut off with an error at the client, leave no object
// and no pending multipart upload, and get a Transfer Failed event; ferry exits 0.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the ferry binary against versitygw")
	}
	srv := s3test.Start(t)
	sink := &eventSink{}
	eb := httptest.NewServer(sink)
	t.Cleanup(eb.Close)
	bin := ferryproc.Build(t)
	dir, _, _ := setup(t)
	sftpAddr, ftpAddr, healthAddr := testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t)
	cfg := filepath.Join(dir, "ferry.yaml")
	const drain = 4 * time.Second
	write(t, cfg, fmt.Sprintf(`listen:
  sftp: %q
  ftp: %q
  health: %q
  metrics: ""
storage:
  s3: {bucket: %s, endpoint: %s, region: %s, path_style: true}
host_keys:
  paths: [keys/ssh_host_ed25519_key]
  generate: false
ftp:
  passive_ports: ""
  tls: {mode: none}
events:
  eventbridge: {bus: default, endpoint: %q}
drain_timeout: %s
memory_limit: 0
`, sftpAddr, ftpAddr, healthAddr, srv.Bucket, srv.Endpoint, srv.Region, eb.URL, drain))
	p := ferryproc.Start(t, bin, cfg, "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.Secret)
	p.WaitListening(t, sftpAddr, ftpAddr, healthAddr)

	pattern := make([]byte, 1<<20)
	if _, err := rand.Read(pattern); err != nil {
		t.Fatal(err)
	}
	const size = 7 << 20 // above the 5 MiB part size: multipart
	type transfer struct {
		name     string
		finishes bool
		err      error
		progress chan int
	}
	transfers := []*transfer{
		{name: "sftp-finishes.bin", finishes: true}, {name: "sftp-cut.bin"},
		{name: "ftp-finishes.bin", finishes: true}, {name: "ftp-cut.bin"},
	}
	var wg sync.WaitGroup
	for _, tr := range transfers {
		tr.progress = make(chan int, 1)
		n := -1 // never ends
		if tr.finishes {
			n = size
		}
		// The finishing ones take under 2s in all, the others keep sending past the drain.
		body := &slowReader{data: pattern, n: n, rate: 4 << 20, progress: tr.progress}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if strings.HasPrefix(tr.name, "sftp") {
				tr.err = sftpUpload(sftpAddr, tr.name, body)
			} else {
				tr.err = ftpUpload(ftpAddr, tr.name, body)
			}
		}()
	}
	// Every transfer is under way (a part already sent for each) before the signal.
	for _, tr := range transfers {
		select {
		case <-waitFor(tr.progress, 1<<20):
		case <-time.After(20 * time.Second):
			t.Fatalf("%s never got going", tr.name)
		}
	}
	signalled := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// At once: no new connection, and the load balancer's check says draining.
	time.Sleep(300 * time.Millisecond)
	for _, addr := range []string{sftpAddr, ftpAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after SIGTERM", addr)
		}
	}
	if code, body := get(t, "http://"+healthAddr+"/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz during the drain = %d %q", code, body)
	}

	code, err := p.Wait(drain + 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(signalled)
	wg.Wait()
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if stopped < drain || stopped > drain+15*time.Second {
		t.Errorf("stopped %s after SIGTERM, want the %s drain and a prompt abort", stopped.Round(time.Millisecond), drain)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s3c := srv.Client()
	for _, tr := range transfers {
		key := "alice/" + tr.name
		obj, getErr := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: &srv.Bucket, Key: aws.String(key)})
		var got []byte
		if getErr == nil {
			got, _ = io.ReadAll(obj.Body)
			obj.Body.Close()
		}
		if tr.finishes {
			if tr.err != nil {
				t.Errorf("%s: the client saw %v, want success within the drain", tr.name, tr.err)
			}
			want := make([]byte, size)
			for i := range want {
				want[i] = pattern[i%len(pattern)]
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: object %d bytes (%v), want the %d bytes sent", tr.name, len(got), getErr, size)
			}
			if d := sink.event("Transfer Completed", key); d == nil || d["bytes"] != float64(size) {
				t.Errorf("%s: Transfer Completed event %v", tr.name, d)
			}
			continue
		}
		if tr.err == nil {
			t.Errorf("%s: the client saw success for a transfer cut off by the drain", tr.name)
		}
		if getErr == nil {
			t.Errorf("%s: an object of %d bytes exists after its transfer was cut off", tr.name, len(got))
		}
		if d := sink.event("Transfer Failed", key); d == nil || !strings.Contains(fmt.Sprint(d["failure_reason"]), "abort") {
			t.Errorf("%s: Transfer Failed event %v", tr.name, d)
		}
		t.Logf("%s: client saw %v", tr.name, tr.err)
	}
	out, err := s3c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range out.Uploads {
		t.Errorf("multipart upload of %s left pending", aws.ToString(u.Key))
	}
	log := p.Log.String()
	for _, want := range []string{"shutting down", "drain timeout: transfers still running were aborted", "ferry stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	t.Logf("stopped %s after SIGTERM (drain_timeout %s)", stopped.Round(time.Millisecond), drain)
}

// waitFor closes the returned channel once progress reports at least n.
func waitFor(progress <-chan int, n int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for p := range progress {
			if p >= n {
				close(done)
				return
			}
		}
	}()
	return done
}

func sftpUpload(addr, name string, body io.Reader) error {
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{ssh.Password("pw")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	c, err := sftp.NewClient(conn)
	if err != nil {
		return err
	}
	defer c.Close()
	f, err := c.Create(name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func ftpUpload(addr, name string, body io.Reader) error {
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		return err
	}
	defer c.Quit()
	if err := c.Login("alice", "pw"); err != nil {
		return err
	}
	return c.Stor(name, body)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
