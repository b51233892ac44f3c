package putevents

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"
)

const (
	testAccessKey = "AKIDFERRYTEST"
	testSecretKey = "ferry-test-secret"
	testRegion    = "us-east-1"
)

// wireEntry is a PutEvents request entry as the AWS JSON 1.1 protocol carries it.
type wireEntry struct {
	Source       string
	DetailType   string
	Detail       string
	EventBusName string
	Resources    []string
	Time         json.Number // epoch seconds
}

// reply is how the fake answers one request: an HTTP error, or per-entry error codes.
type reply struct {
	status  int            // 0 means 200
	errType string         // for errors: the AWS error code in "__type"
	fail    map[int]string // entry index -> ErrorCode
}

// fakeEventBridge is a local HTTP endpoint speaking PutEvents the way AWS does: it checks what
// the real SDK sends (AWS JSON 1.1, the X-Amz-Target, a valid SigV4 signature, at most 10
// entries) and answers with per-entry results lined up with the request.
type fakeEventBridge struct {
	t        *testing.T
	url      string       // where the client sends requests
	http     *http.Client // how: a socket to an httptest server, or an in-memory transport
	wantBus  string
	maxBytes int

	mu       sync.Mutex
	requests [][]wireEntry
	times    []time.Time                            // when each request arrived
	respond  func(n int, entries []wireEntry) reply // n counts requests from 0
	received chan int                               // request number, after decoding, before answering
	gate     chan struct{}                          // when non-nil, answers wait for it to be closed
}

func newFakeEventBridge(t *testing.T, respond func(n int, entries []wireEntry) reply) *fakeEventBridge {
	f := newFake(t, respond)
	srv := httptest.NewServer(http.HandlerFunc(f.serve)) // binds 127.0.0.1:0
	t.Cleanup(srv.Close)
	f.url, f.http = srv.URL, srv.Client()
	return f
}

// newInMemoryEventBridge is the same fake reached through an in-memory transport instead of a
// socket, for testing/synctest bubbles, where nothing may wait on the network so that timers
// run in virtual time. Requests still go through the SDK's serialization and signing and the
// fake's protocol checks.
func newInMemoryEventBridge(t *testing.T, respond func(n int, entries []wireEntry) reply) *fakeEventBridge {
	f := newFake(t, respond)
	f.url, f.http = "http://events.test", &http.Client{Transport: handlerTransport{http.HandlerFunc(f.serve)}}
	return f
}

// newFake is the fake without a way to reach it yet.
func newFake(t *testing.T, respond func(n int, entries []wireEntry) reply) *fakeEventBridge {
	return &fakeEventBridge{t: t, wantBus: "ferry-test", maxBytes: DefaultMaxRequestBytes, respond: respond,
		received: make(chan int, 1000)}
}

// handlerTransport serves a client's requests with a handler in the same goroutine.
type handlerTransport struct{ h http.Handler }

func (ht handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	in := r.Clone(r.Context()) // as a server receives it
	in.Host, in.RequestURI = r.URL.Host, r.URL.RequestURI()
	if r.Body == nil {
		in.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	ht.h.ServeHTTP(rec, in)
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return rec.Result(), nil
}

// client is a real SDK client pointed at the fake. The SDK's own retries are off so the
// publisher's are what the tests see.
func (f *fakeEventBridge) client() *awseventbridge.Client {
	return awseventbridge.New(awseventbridge.Options{
		Region:           testRegion,
		BaseEndpoint:     aws.String(f.url),
		Credentials:      credentials.NewStaticCredentialsProvider(testAccessKey, testSecretKey, ""),
		RetryMaxAttempts: 1,
		HTTPClient:       f.http,
	})
}

func (f *fakeEventBridge) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		f.t.Errorf("read body: %v", err)
		return
	}
	if err := checkProtocol(r, body); err != nil {
		f.t.Errorf("request does not follow the AWS protocol: %v", err)
		writeAWSError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	var in struct{ Entries []wireEntry }
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		f.t.Errorf("decode PutEvents body %s: %v", body, err)
		writeAWSError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	if n := len(in.Entries); n < 1 || n > MaxBatchEntries {
		f.t.Errorf("PutEvents with %d entries", n)
	}
	total := 0
	for i, e := range in.Entries {
		if e.Source == "" || e.DetailType == "" || !json.Valid([]byte(e.Detail)) {
			f.t.Errorf("entry %d incomplete: %+v", i, e)
		}
		if e.EventBusName != f.wantBus {
			f.t.Errorf("entry %d on bus %q, want %q", i, e.EventBusName, f.wantBus)
		}
		total += Entry{Source: e.Source, DetailType: e.DetailType, Detail: e.Detail, Resources: e.Resources}.Size()
		if e.Time != "" {
			total += 14
		}
	}
	if total > f.maxBytes {
		f.t.Errorf("request of %d entry bytes exceeds %d", total, f.maxBytes)
	}

	f.mu.Lock()
	n := len(f.requests)
	f.requests = append(f.requests, in.Entries)
	f.times = append(f.times, time.Now())
	gate := f.gate
	f.mu.Unlock()
	f.received <- n
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}

	rep := reply{}
	if f.respond != nil {
		rep = f.respond(n, in.Entries)
	}
	w.Header().Set("x-amzn-RequestId", fmt.Sprintf("req-%d", n))
	if rep.status != 0 && rep.status != http.StatusOK {
		writeAWSError(w, rep.status, rep.errType, "injected failure")
		return
	}
	type result struct {
		EventId      string `json:",omitempty"`
		ErrorCode    string `json:",omitempty"`
		ErrorMessage string `json:",omitempty"`
	}
	out := struct {
		FailedEntryCount int
		Entries          []result
	}{}
	for i := range in.Entries {
		if code, ok := rep.fail[i]; ok {
			out.FailedEntryCount++
			out.Entries = append(out.Entries, result{ErrorCode: code, ErrorMessage: "injected " + code})
			continue
		}
		out.Entries = append(out.Entries, result{EventId: fmt.Sprintf("ev-%d-%d", n, i)})
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

func writeAWSError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

// checkProtocol verifies the parts of the request AWS requires: the JSON 1.1 content type and
// target, and a SigV4 signature that verifies with the test credentials.
func checkProtocol(r *http.Request, body []byte) error {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		return fmt.Errorf("%s %s, want POST /", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		return fmt.Errorf("content-type %q", ct)
	}
	if tg := r.Header.Get("X-Amz-Target"); tg != "AWSEvents.PutEvents" {
		return fmt.Errorf("x-amz-target %q", tg)
	}
	return verifySigV4(r, body)
}

// verifySigV4 re-signs the request with the SDK's signer over the headers the client said it
// signed, and compares signatures.
func verifySigV4(r *http.Request, body []byte) error {
	auth := r.Header.Get("Authorization")
	const algo = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(auth, algo) {
		return fmt.Errorf("authorization %q is not SigV4", auth)
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(auth, algo), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	wantScope := "/" + testRegion + "/events/aws4_request"
	if cred := fields["Credential"]; !strings.HasPrefix(cred, testAccessKey+"/") || !strings.HasSuffix(cred, wantScope) {
		return fmt.Errorf("credential scope %q", cred)
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("x-amz-date: %w", err)
	}
	re, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		if h != "host" && h != "content-length" {
			re.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey},
		re, hex.EncodeToString(sum[:]), "events", testRegion, at)
	if err != nil {
		return err
	}
	if got, want := fields["Signature"], sigOf(re.Header.Get("Authorization")); got == "" || got != want {
		return fmt.Errorf("signature %q does not verify (want %q)", got, want)
	}
	return nil
}

func sigOf(auth string) string {
	_, sig, _ := strings.Cut(auth, "Signature=")
	return sig
}

func (f *fakeEventBridge) all() [][]wireEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]wireEntry, len(f.requests))
	copy(out, f.requests)
	return out
}

// arrivals returns when each request arrived, as durations since start.
func (f *fakeEventBridge) arrivals(start time.Time) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]time.Duration, len(f.times))
	for i, at := range f.times {
		out[i] = at.Sub(start)
	}
	return out
}

func (f *fakeEventBridge) setGate(g chan struct{}) {
	f.mu.Lock()
	f.gate = g
	f.mu.Unlock()
}

// waitRequest waits for the server to have received request number n (0-based).
func (f *fakeEventBridge) waitRequest(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case got := <-f.received:
			if got >= n {
				return
			}
		case <-deadline:
			t.Fatalf("request %d never arrived", n)
		}
	}
}
