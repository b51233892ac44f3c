package health

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// s3State is what the probe finds: nil (S3 answers), an error, or hang (no answer at all).
type s3State struct {
	mu   sync.Mutex
	err  error
	hang bool
}

func (s *s3State) set(err error, hang bool) {
	s.mu.Lock()
	s.err, s.hang = err, hang
	s.mu.Unlock()
}

func (s *s3State) probe(ctx context.Context) error {
	s.mu.Lock()
	err, hang := s.err, s.hang
	s.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String()
}

func TestReadiness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s3 := &s3State{}
		var usersErr error
		var usersMu sync.Mutex
		c, err := New(Config{ProbeS3: s3.probe, Interval: 5 * time.Second, Timeout: 2 * time.Second,
			Users: func() error { usersMu.Lock(); defer usersMu.Unlock(); return usersErr }})
		if err != nil {
			t.Fatal(err)
		}
		h := c.Handler()
		expect := func(step string, code int, body string) {
			t.Helper()
			gotCode, gotBody := get(t, h, "GET", "/readyz")
			if gotCode != code || !strings.Contains(gotBody, body) {
				t.Errorf("%s: /readyz = %d %q, want %d containing %q", step, gotCode, gotBody, code, body)
			}
			if code, body := get(t, h, "GET", "/healthz"); code != 200 || body != "ok\n" {
				t.Errorf("%s: /healthz = %d %q: liveness must not depend on readiness", step, code, body)
			}
		}
		expect("before any probe", 503, "s3: not probed yet")

		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go c.Run(ctx)
		synctest.Wait()
		expect("S3 answers", 200, "ready")

		s3.set(errors.New("dial tcp 127.0.0.1:9: connection refused"), false)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		expect("S3 refuses", 503, "not ready\ns3: dial tcp 127.0.0.1:9: connection refused")

		s3.set(nil, false)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		expect("S3 back", 200, "ready")

		// S3 that never answers: each probe times out.
		s3.set(nil, true)
		time.Sleep(5*time.Second + 2*time.Second)
		synctest.Wait()
		expect("S3 silent", 503, "s3: context deadline exceeded")
		s3.set(nil, false)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		expect("S3 answers again", 200, "ready")

		usersMu.Lock()
		usersErr = errors.New("s3://acme/users.yaml: file does not exist")
		usersMu.Unlock()
		expect("no users", 503, "users not loaded: s3://acme/users.yaml: file does not exist")
		usersMu.Lock()
		usersErr = nil
		usersMu.Unlock()

		// Probes that stop (the loop ended) leave readiness to expire.
		cancel()
		synctest.Wait()
		time.Sleep(16 * time.Second)
		expect("no recent probe", 503, "s3: no answer since")

		c.SetDraining()
		expect("draining", 503, "draining")
	})
}

func TestOnlyTheTwoEndpoints(t *testing.T) {
	c, err := New(Config{ProbeS3: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Handler()
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/healthz", 200},
		{"HEAD", "/healthz", 200},
		{"GET", "/metrics", 404},
		{"GET", "/debug/pprof/", 404},
		{"GET", "/", 404},
		{"POST", "/readyz", 405},
	} {
		if code, _ := get(t, h, tc.method, tc.path); code != tc.code {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, code, tc.code)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without a probe accepted")
	}
}

// Logins depend on S3Available: nil before the first probe and while S3 answers, an
// ErrS3Unavailable with the probe's reason once it fails; while it fails S3 is probed every
// second, so the gateway serves again within a second of S3 coming back, not a whole Interval.
func TestS3AvailableRecoversWithinASecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s3 := &s3State{}
		s3.set(errors.New("dial tcp 127.0.0.1:9: connection refused"), false)
		c, err := New(Config{ProbeS3: s3.probe, Interval: 30 * time.Second, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.S3Available(); err != nil {
			t.Fatalf("before the first probe: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go c.Run(ctx)
		synctest.Wait()
		err = c.S3Available()
		if !errors.Is(err, ErrS3Unavailable) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("S3 down: %v", err)
		}
		s3.set(nil, false)
		time.Sleep(RetryInterval)
		synctest.Wait()
		if err := c.S3Available(); err != nil {
			t.Fatalf("a second after S3 came back: %v", err)
		}
	})
}
