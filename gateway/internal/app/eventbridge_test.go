package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// putEventsServer decodes PutEvents as the SDK sends it (AWS JSON 1.1) and answers like AWS.
type putEventsServer struct {
	mu      sync.Mutex
	entries []map[string]any
}

func (p *putEventsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("X-Amz-Target") != "AWSEvents.PutEvents" ||
		r.Header.Get("Content-Type") != "application/x-amz-json-1.1" || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		http.Error(w, "not a signed PutEvents call", http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var in struct{ Entries []map[string]any }
	if err := json.Unmarshal(body, &in); err != nil || len(in.Entries) == 0 || len(in.Entries) > 10 {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.entries = append(p.entries, in.Entries...)
	p.mu.Unlock()
	out := map[string]any{"FailedEntryCount": 0}
	var ids []map[string]string
	for range in.Entries {
		ids = append(ids, map[string]string{"EventId": "id"})
	}
	out["Entries"] = ids
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

func (p *putEventsServer) find(detailType string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.entries {
		if e["DetailType"] == detailType {
			return e
		}
	}
	return nil
}

// TestGatewayEventsToEventBridge: on AWS the gateway's events go to the configured bus with
// PutEvents (source ferry.gateway), carrying who uploaded what.
func TestGatewayEventsToEventBridge(t *testing.T) {
	t.Parallel()
	eb := &putEventsServer{}
	ts := httptest.NewServer(eb)
	defer ts.Close()
	srv := s3test.Start(t)
	dir := t.TempDir()
	hash, _ := users.HashPassword("pw")
	writeFile(t, filepath.Join(dir, "users.yaml"), fmt.Sprintf("users:\n  - name: alice\n    password_hash: %q\n    home: alice/\n    permissions: [\"*\"]\n", hash))
	sftpAddr := testtool.FreeAddr(t)
	writeFile(t, filepath.Join(dir, "ferry.yaml"), fmt.Sprintf(`listen:
  sftp: %q
  metrics: ""
storage:
  s3: {bucket: %s, endpoint: %s, region: %s, path_style: true}
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
events:
  eventbridge:
    bus: ferry-events
    endpoint: %s
`, sftpAddr, srv.Bucket, srv.Endpoint, srv.Region, ts.URL))
	logs := &logbuf.Buffer{}
	runGateway(t, filepath.Join(dir, "ferry.yaml"), logs, sftpAddr)
	sc := sftpClient(t, sftpAddr, "alice", "pw")
	f, err := sc.Create("/data.csv")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("x,y\n"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var got map[string]any
	for got == nil && time.Now().Before(deadline) {
		got = eb.find(event.DetailTypeTransferCompleted)
		time.Sleep(50 * time.Millisecond)
	}
	if got == nil {
		t.Fatalf("no Transfer Completed PutEvents entry within 10s\n%s", logs)
	}
	var d event.GatewayDetail
	if err := json.Unmarshal([]byte(got["Detail"].(string)), &d); err != nil {
		t.Fatal(err)
	}
	if got["Source"] != event.SourceGateway || got["EventBusName"] != "ferry-events" ||
		d.User != "alice" || d.Key != "alice/data.csv" || d.Bytes != 4 || len(d.SHA256) != 64 {
		t.Errorf("entry = %v, detail = %+v", got, d)
	}
}
