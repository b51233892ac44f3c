// Package lambdaemu is a Lambda Runtime API emulator for tests: it serves the endpoints a
// provided.al2023 `bootstrap` polls (GET /2018-06-01/runtime/invocation/next, POST
// .../{id}/response and .../{id}/error, answered 202) and runs the real binary against it.
package lambdaemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Result is what the function answered for one invocation.
type Result struct {
	RequestID string
	Payload   []byte // the /response body, or the /error body when Err
	Err       bool
	ErrorType string // Lambda-Runtime-Function-Error-Type header of an /error post
}

type invocation struct {
	id      string
	payload []byte
	done    chan Result
}

// Emulator serves the Runtime API of one function.
type Emulator struct {
	t       testing.TB
	srv     *httptest.Server
	queue   chan *invocation
	mu      sync.Mutex
	pending map[string]*invocation
	n       int
	// Deadline is the time a function gets per invocation (Lambda-Runtime-Deadline-Ms).
	Deadline time.Duration
	initErr  []byte
}

// New starts an emulator until t ends.
func New(t testing.TB) *Emulator {
	e := &Emulator{t: t, queue: make(chan *invocation), pending: map[string]*invocation{}, Deadline: 60 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", e.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", e.answer(false))
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", e.answer(true))
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.initErr = b
		e.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// API is the value of AWS_LAMBDA_RUNTIME_API (host:port, no scheme).
func (e *Emulator) API() string { return strings.TrimPrefix(e.srv.URL, "http://") }

func (e *Emulator) next(w http.ResponseWriter, r *http.Request) {
	select {
	case inv := <-e.queue:
		w.Header().Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(e.Deadline).UnixMilli(), 10))
		w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:111122223333:function:test")
		w.Header().Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(inv.payload)
	case <-r.Context().Done():
	}
}

func (e *Emulator) answer(isErr bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		body, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		inv := e.pending[id]
		delete(e.pending, id)
		e.mu.Unlock()
		if inv == nil {
			e.t.Errorf("lambdaemu: answer for unknown request %q", id)
			http.Error(w, "unknown request id", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		inv.done <- Result{RequestID: id, Payload: body, Err: isErr, ErrorType: r.Header.Get("Lambda-Runtime-Function-Error-Type")}
	}
}

// Invoke hands payload to the function and waits for its answer.
func (e *Emulator) Invoke(ctx context.Context, payload []byte) (Result, error) {
	e.mu.Lock()
	e.n++
	inv := &invocation{id: fmt.Sprintf("req-%d", e.n), payload: payload, done: make(chan Result, 1)}
	e.pending[inv.id] = inv
	e.mu.Unlock()
	select {
	case e.queue <- inv:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("invoke %s: the function never asked for it: %w (init error: %s)", inv.id, ctx.Err(), e.InitError())
	}
	select {
	case r := <-inv.done:
		return r, nil
	case <-ctx.Done():
		return Result{}, fmt.Errorf("invoke %s: no answer: %w", inv.id, ctx.Err())
	}
}

// InitError is the body of a POST /runtime/init/error, if any.
func (e *Emulator) InitError() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return string(e.initErr)
}

// Process is a running bootstrap.
type Process struct {
	mu  sync.Mutex
	out bytes.Buffer
}

func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output is what the function wrote to stdout and stderr so far (its logs and EMF lines).
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Run starts the binary with env (plus AWS_LAMBDA_RUNTIME_API) until t ends.
func (e *Emulator) Run(bin string, env []string) *Process {
	p := &Process{}
	cmd := exec.Command(bin)
	cmd.Env = append(env, "AWS_LAMBDA_RUNTIME_API="+e.API())
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("lambdaemu: start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	e.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if e.t.Failed() {
			e.t.Logf("lambdaemu: %s output:\n%s", bin, p.Output())
		}
	})
	return p
}
