package transferevents

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/ferrygw/ferry/gateway/internal/sftpd/sftptest"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/putevents"
)

// putEventsEntry is a PutEvents request entry as AWS JSON 1.1 carries it.
type putEventsEntry struct {
	Source       string
	DetailType   string
	Detail       string
	EventBusName string
	Resources    []string
	Time         json.Number // epoch seconds
}

// fakePutEvents is a local endpoint that decodes PutEvents the way AWS does (JSON 1.1 body,
// X-Amz-Target, SigV4 for the "events" service, unknown fields refused) and accepts everything.
type fakePutEvents struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	entries []putEventsEntry
	got     chan struct{}
}

func newFakePutEvents(t *testing.T) *fakePutEvents {
	f := &fakePutEvents{t: t, got: make(chan struct{}, 100)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakePutEvents) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/":
		f.t.Errorf("%s %s", r.Method, r.URL.Path)
	case r.Header.Get("Content-Type") != "application/x-amz-json-1.1":
		f.t.Errorf("content-type %q", r.Header.Get("Content-Type"))
	case r.Header.Get("X-Amz-Target") != "AWSEvents.PutEvents":
		f.t.Errorf("target %q", r.Header.Get("X-Amz-Target"))
	case !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDTEST/") ||
		!strings.Contains(r.Header.Get("Authorization"), "/us-east-1/events/aws4_request"):
		f.t.Errorf("authorization %q", r.Header.Get("Authorization"))
	}
	var in struct{ Entries []putEventsEntry }
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		f.t.Errorf("decode %s: %v", body, err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	type result struct{ EventId string }
	out := struct {
		FailedEntryCount int
		Entries          []result
	}{}
	for range in.Entries {
		out.Entries = append(out.Entries, result{EventId: "ev"})
	}
	f.mu.Lock()
	f.entries = append(f.entries, in.Entries...)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
	f.got <- struct{}{}
}

func (f *fakePutEvents) wait(t *testing.T, n int) []putEventsEntry {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		got := append([]putEventsEntry(nil), f.entries...)
		f.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-f.got:
		case <-deadline:
			t.Fatalf("%d entries arrived, want %d", len(got), n)
		}
	}
}

func TestEventBridgeWire(t *testing.T) {
	f := newFakePutEvents(t)
	client := awseventbridge.New(awseventbridge.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(f.srv.URL), HTTPClient: f.srv.Client(),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""), RetryMaxAttempts: 1,
	})
	pub, err := putevents.New(client, putevents.Config{BusName: "ferry-events", FlushInterval: 10 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub.Start(t.Context())
	ev := New(NewEventBridgeSink(pub, nil), Config{})

	fsys := ev.Wrap(memstore.New(), "sftp")
	data := []byte("id,amount\n1,100\n")
	up, err := fsys.Create(t.Context(), "/in/pay.csv", storage.CreateOptions{
		User: "alice", Protocol: "sftp", ClientAddr: "127.0.0.1:40001", TransferID: "tid-7", SessionID: "sess-7",
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := up.Close(); err != nil {
		t.Fatal(err)
	}
	_, _ = ev.Auth(sftptest.NewAuth(), "ftps").CheckPassword(t.Context(), "eve", "hunter2", netip.MustParseAddr("192.0.2.1"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	entries := f.wait(t, 2)
	if len(entries) != 2 {
		t.Fatalf("%d entries: %+v", len(entries), entries)
	}
	byType := map[string]putEventsEntry{}
	for _, e := range entries {
		if e.Source != "ferry.gateway" || e.EventBusName != "ferry-events" {
			t.Errorf("entry %+v", e)
		}
		byType[e.DetailType] = e
	}
	done, ok := byType["Transfer Completed"]
	if !ok {
		t.Fatalf("no Transfer Completed among %+v", entries)
	}
	var d event.GatewayDetail
	if err := json.Unmarshal([]byte(done.Detail), &d); err != nil {
		t.Fatal(err)
	}
	if d.User != "alice" || d.Bytes != int64(len(data)) || d.SHA256 != sum(data) || d.Key != "in/pay.csv" ||
		d.Bucket != memstore.Bucket || d.SessionID != "sess-7" || d.TransferID != "tid-7" {
		t.Errorf("completed detail %+v", d)
	}
	if len(done.Resources) != 1 || done.Resources[0] != "arn:aws:s3:::"+memstore.Bucket {
		t.Errorf("resources %v", done.Resources)
	}
	if sec, err := done.Time.Int64(); err != nil || sec != d.EndTime.Truncate(time.Second).Unix() {
		t.Errorf("time %s (%v), want end time %v", done.Time, err, d.EndTime)
	}
	// The detail uses the contract's snake_case names.
	for _, field := range []string{`"session_id":"sess-7"`, `"client_address":"127.0.0.1:40001"`, `"sha256":"`, `"start_time":"`} {
		if !strings.Contains(done.Detail, field) {
			t.Errorf("detail %s lacks %s", done.Detail, field)
		}
	}
	login, ok := byType["Login Failed"]
	if !ok {
		t.Fatalf("no Login Failed among %+v", entries)
	}
	if !strings.Contains(login.Detail, `"user":"eve"`) || !strings.Contains(login.Detail, `"protocol":"ftps"`) ||
		strings.Contains(login.Detail, "hunter2") || len(login.Resources) != 0 {
		t.Errorf("login entry %+v", login)
	}
	if s := pub.Stats(); s.Published != 2 || s.Dropped != 0 {
		t.Errorf("publisher stats %+v", s)
	}
}
