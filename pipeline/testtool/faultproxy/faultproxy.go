// Package faultproxy is an HTTP proxy for tests that sits between an S3 client and an
// S3-compatible server (versitygw, the embedded endpoint) on 127.0.0.1 and injects the faults a
// cloud object store really has: 503 SlowDown, 500 InternalError, a connection reset in the
// middle of the request body or of the response body, added latency, and a response that never
// comes (or stops halfway). Faults are chosen per request by rules: an S3 operation (read from
// the request as S3 routes it), an optional predicate, a probability and a maximum count, so a
// test can say "5% of UploadParts get a SlowDown" or "the next CompleteMultipartUpload's answer
// is cut off".
//
// The proxy forwards the client's Host header unchanged, so SigV4 signatures made for the
// proxy's address stay valid upstream. It counts requests, faults and the SDK's retries: the AWS
// SDKs send "amz-sdk-request: attempt=N; max=M" with every attempt, so a request whose attempt
// is above 1 is a retry.
//
// It lives under pipeline/testtool because both sides' tests use it, and the gateway may import
// the pipeline, never the reverse.
package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Kind is a fault.
type Kind string

// The faults. Those that do not forward the request leave the server untouched; ResetResponse
// and StallBody forward it, so the server acted and only its answer is lost: the ambiguous
// outcome (did the PutObject land?) a client must resolve.
const (
	// SlowDown answers 503 with S3's SlowDown error; the request is not forwarded.
	SlowDown Kind = "slowdown"
	// InternalError answers 500 with S3's InternalError; the request is not forwarded.
	InternalError Kind = "internal-error"
	// ResetRequest forwards half the request body, then resets both connections: the server
	// sees a truncated request, the client a reset while sending.
	ResetRequest Kind = "reset-request"
	// ResetResponse forwards the request; the client gets the status, the headers and half the
	// body (nothing when the body is empty), then a reset.
	ResetResponse Kind = "reset-response"
	// Latency waits Rule.Delay, then forwards.
	Latency Kind = "latency"
	// Stall reads the request and never answers: the connection is reset after Rule.Delay
	// (default one minute) unless the client gives up first.
	Stall Kind = "stall"
	// StallBody forwards the request and sends the headers and half the body, then nothing more
	// until Rule.Delay has passed or the client gives up; then the connection is reset.
	StallBody Kind = "stall-body"
)

// Kinds lists every fault.
var Kinds = []Kind{SlowDown, InternalError, ResetRequest, ResetResponse, Latency, Stall, StallBody}

// Request is what a rule sees of a request.
type Request struct {
	Op      string // S3 operation, e.g. "PutObject", "UploadPart", "GetObject" (see Operation)
	Method  string
	Bucket  string
	Key     string
	Attempt int // the SDK's attempt number (1 = first try); 0 when the client did not say
	Size    int64
	Header  http.Header // the request's headers (read only)
}

// Rule injects one kind of fault into matching requests.
type Rule struct {
	Name  string // names the rule in Stats; default its Kind
	Op    string // S3 operation to match; "" matches every operation
	Match func(Request) bool
	Kind  Kind
	// Rate is the probability that a matching request gets the fault; 0 means every one.
	Rate float64
	// Times is how many faults this rule injects at most; 0 means no limit.
	Times int
	// Delay is Latency's added delay and how long Stall and StallBody hold the connection
	// (default one minute).
	Delay time.Duration
}

// Stats counts what went through the proxy.
type Stats struct {
	Requests int            // every request received
	Retries  int            // requests the SDK marked as a retry (attempt > 1)
	Faults   int            // requests that got a fault
	ByOp     map[string]int // requests per S3 operation
	RetryOp  map[string]int // retries per S3 operation
	ByRule   map[string]int // faults per rule name
	ByKind   map[Kind]int   // faults per kind
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	URL string // http://127.0.0.1:PORT, to use as the S3 endpoint

	upstream  string
	transport *http.Transport
	done      chan struct{} // closed when the proxy stops: stalled handlers return

	mu    sync.Mutex
	rng   *rand.Rand
	rules []*ruleState
	stats Stats
}

type ruleState struct {
	Rule
	fired int
}

// Start runs a proxy to upstream (an http:// base URL) until t ends. seed makes the random
// choices of rated rules repeatable.
func Start(t testing.TB, upstream string, seed uint64) *Proxy {
	t.Helper()
	p, stop := New(upstream, seed)
	t.Cleanup(stop)
	return p
}

// New runs a proxy to upstream; stop shuts it down (stalled requests are reset).
func New(upstream string, seed uint64) (p *Proxy, stop func()) {
	p = &Proxy{
		upstream: strings.TrimRight(upstream, "/"),
		transport: &http.Transport{
			Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 128, IdleConnTimeout: 30 * time.Second,
			DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		},
		done: make(chan struct{}),
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	p.resetStats()
	hs := httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	hs.Config.ErrorLog = nil
	hs.Start()
	p.URL = hs.URL
	var once sync.Once
	return p, func() {
		once.Do(func() {
			close(p.done)
			hs.CloseClientConnections()
			hs.Close()
			p.transport.CloseIdleConnections()
		})
	}
}

// SetRules replaces the rules; the first rule that matches a request and fires decides its
// fault. No rules: every request is forwarded untouched.
func (p *Proxy) SetRules(rules ...Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = p.rules[:0]
	for _, r := range rules {
		if r.Name == "" {
			r.Name = string(r.Kind)
		}
		p.rules = append(p.rules, &ruleState{Rule: r})
	}
}

// Add appends a rule after the current ones.
func (p *Proxy) Add(r Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Name == "" {
		r.Name = string(r.Kind)
	}
	p.rules = append(p.rules, &ruleState{Rule: r})
}

// Stats returns a copy of the counts so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.ByOp, s.RetryOp, s.ByRule, s.ByKind = clone(s.ByOp), clone(s.RetryOp), clone(s.ByRule), clone(s.ByKind)
	return s
}

// ResetStats zeroes the counts.
func (p *Proxy) ResetStats() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resetStats()
}

func (p *Proxy) resetStats() {
	p.stats = Stats{ByOp: map[string]int{}, RetryOp: map[string]int{}, ByRule: map[string]int{}, ByKind: map[Kind]int{}}
}

func clone[K comparable](m map[K]int) map[K]int {
	out := make(map[K]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// choose counts the request and returns the fault it gets, if any.
func (p *Proxy) choose(req Request) *Rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
	p.stats.ByOp[req.Op]++
	if req.Attempt > 1 {
		p.stats.Retries++
		p.stats.RetryOp[req.Op]++
	}
	for _, r := range p.rules {
		if r.Op != "" && r.Op != req.Op {
			continue
		}
		if r.Match != nil && !r.Match(req) {
			continue
		}
		if r.Times > 0 && r.fired >= r.Times {
			continue
		}
		if r.Rate > 0 && r.Rate < 1 && p.rng.Float64() >= r.Rate {
			continue
		}
		r.fired++
		p.stats.Faults++
		p.stats.ByRule[r.Name]++
		p.stats.ByKind[r.Kind]++
		rule := r.Rule
		return &rule
	}
	return nil
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	op, bucket, key := Operation(r)
	if op == "Post" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") && r.ContentLength < 1<<20 {
		// AWS's query protocol (SNS, SQS) names the action in the body.
		body, err := io.ReadAll(r.Body)
		if err == nil {
			if q, err := url.ParseQuery(string(body)); err == nil && q.Get("Action") != "" {
				op = q.Get("Action")
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	req := Request{Op: op, Method: r.Method, Bucket: bucket, Key: key, Attempt: attempt(r.Header), Size: r.ContentLength,
		Header: r.Header}
	rule := p.choose(req)
	if rule == nil {
		p.forward(w, r, nil)
		return
	}
	switch rule.Kind {
	case SlowDown:
		drain(r)
		s3Error(w, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
	case InternalError:
		drain(r)
		s3Error(w, http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
	case Latency:
		select {
		case <-time.After(rule.Delay):
		case <-r.Context().Done():
			return
		case <-p.done:
			return
		}
		p.forward(w, r, nil)
	case ResetRequest:
		p.resetRequest(w, r)
	case ResetResponse:
		p.forward(w, r, &cut{})
	case StallBody:
		p.forward(w, r, &cut{stall: stallFor(rule.Delay)})
	case Stall:
		drain(r)
		p.hold(r, stallFor(rule.Delay))
		reset(w)
	default:
		http.Error(w, "faultproxy: unknown fault "+string(rule.Kind), http.StatusBadGateway)
	}
}

func stallFor(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Minute
	}
	return d
}

// hold waits until d has passed, the client went away or the proxy stops.
func (p *Proxy) hold(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	case <-p.done:
	}
}

// cut says how a forwarded response is broken: after half its body, reset (stall 0) or hold
// for stall then reset.
type cut struct{ stall time.Duration }

// forward sends r upstream and copies the answer back, broken as c says when c is not nil.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, c *cut) {
	resp, err := p.roundTrip(r, r.Body)
	if err != nil {
		if r.Context().Err() == nil {
			http.Error(w, "faultproxy: upstream: "+err.Error(), http.StatusBadGateway)
		}
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	for k, vs := range resp.Header {
		if !hopByHop(k) {
			h[k] = vs
		}
	}
	if c == nil {
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	// Broken: send the headers and half of a known body; a body of unknown length is read
	// whole so that half of it can be sent.
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		reset(w)
		return
	}
	if len(body) < 2 && c.stall == 0 {
		reset(w) // nothing to cut in half: the answer is lost altogether
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body[:len(body)/2])
	_ = http.NewResponseController(w).Flush()
	if c.stall > 0 {
		p.hold(r, c.stall)
	}
	reset(w)
}

// resetRequest forwards half of r's body, so the server sees a request cut short, then resets
// the client's connection. A request without a body is reset before it is forwarded.
func (p *Proxy) resetRequest(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength < 2 {
		reset(w)
		return
	}
	half := r.ContentLength / 2
	body := io.MultiReader(io.LimitReader(r.Body, half), errReader{errors.New("faultproxy: request cut")})
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if resp, err := p.roundTrip(r.WithContext(ctx), body); err == nil {
		resp.Body.Close() // a server that answered a truncated request: still reset the client
	}
	reset(w)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// roundTrip sends r to the upstream server with body, keeping the client's Host header (the
// signature covers it) and the request's length.
func (p *Proxy) roundTrip(r *http.Request, body io.Reader) (*http.Response, error) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, p.upstream+r.URL.RequestURI(), body)
	if err != nil {
		return nil, err
	}
	for k, vs := range r.Header {
		if !hopByHop(k) && !strings.EqualFold(k, "Expect") {
			out.Header[k] = vs
		}
	}
	out.Host = r.Host
	out.ContentLength = r.ContentLength
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	return p.transport.RoundTrip(out)
}

func hopByHop(k string) bool {
	switch http.CanonicalHeaderKey(k) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// reset closes the client's connection with a TCP RST (SO_LINGER 0), as a load balancer or a
// dying server does. What was written and flushed before has been sent; nothing else is.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // cannot hijack: abort the connection the server's way
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func drain(r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }

func s3Error(w http.ResponseWriter, status int, code, msg string) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>%s</Message><RequestId>faultproxy</RequestId><HostId>faultproxy</HostId></Error>`, code, msg)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// attempt reads the SDK's attempt number from amz-sdk-request ("attempt=2; max=3").
func attempt(h http.Header) int {
	for _, part := range strings.Split(h.Get("amz-sdk-request"), ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "attempt="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// Operation names the S3 operation of a path-style request, as S3 routes it by method, query
// and headers, with its bucket and key; for AWS's JSON protocol (EventBridge, …) the action of
// X-Amz-Target ("PutEvents"). A query-protocol POST (SNS) is "Post" here: the proxy reads its
// Action from the body.
func Operation(r *http.Request) (op, bucket, key string) {
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		return target[strings.LastIndexByte(target, '.')+1:], "", ""
	}
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, _ = strings.Cut(path, "/")
	q := r.URL.Query()
	has := func(k string) bool { _, ok := q[k]; return ok }
	copySrc := r.Header.Get("X-Amz-Copy-Source") != ""
	switch r.Method {
	case http.MethodHead:
		if key == "" {
			return "HeadBucket", bucket, key
		}
		return "HeadObject", bucket, key
	case http.MethodGet:
		switch {
		case bucket == "":
			return "ListBuckets", bucket, key
		case key == "" && has("uploads"):
			return "ListMultipartUploads", bucket, key
		case key == "":
			return "ListObjectsV2", bucket, key
		case has("uploadId"):
			return "ListParts", bucket, key
		case has("tagging"):
			return "GetObjectTagging", bucket, key
		}
		return "GetObject", bucket, key
	case http.MethodPut:
		switch {
		case key == "":
			return "CreateBucket", bucket, key
		case has("partNumber") && copySrc:
			return "UploadPartCopy", bucket, key
		case has("partNumber"):
			return "UploadPart", bucket, key
		case has("tagging"):
			return "PutObjectTagging", bucket, key
		case copySrc:
			return "CopyObject", bucket, key
		}
		return "PutObject", bucket, key
	case http.MethodPost:
		switch {
		case has("uploads"):
			return "CreateMultipartUpload", bucket, key
		case has("uploadId"):
			return "CompleteMultipartUpload", bucket, key
		case has("delete"):
			return "DeleteObjects", bucket, key
		}
		return "Post", bucket, key
	case http.MethodDelete:
		switch {
		case key == "":
			return "DeleteBucket", bucket, key
		case has("uploadId"):
			return "AbortMultipartUpload", bucket, key
		case has("tagging"):
			return "DeleteObjectTagging", bucket, key
		}
		return "DeleteObject", bucket, key
	}
	return r.Method, bucket, key
}
