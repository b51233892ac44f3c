package ftpd

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// A client that stops sending mid-upload while keeping both connections open is cut after
// IdleTimeout and its upload aborted.
func TestStalledUploadTimesOut(t *testing.T) {
	e := startEnv(t, Config{IdleTimeout: time.Second})
	r, _, _ := startUpload(t, e, true, "/stalled.bin")
	start := time.Now()
	code, msg := r.read()
	if code != 550 {
		t.Fatalf("stalled upload: %d %s, want 550", code, msg)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("timed out after %v", d)
	}
	e.assertNothingStored("/stalled.bin")
}

func TestASCIIUpload(t *testing.T) {
	e := startEnv(t, Config{TLS: TLSConfig{Mode: TLSOptional}})
	r := dialRaw(t, e.addr)
	r.login(testUser, testPass)
	r.expect(200, "TYPE A")
	_, data := r.openData(false)
	r.expect(150, "STOR /text.txt")
	data.Write([]byte("one\r\ntwo\r\n"))
	data.Close()
	if code, msg := r.read(); code != 226 {
		t.Fatalf("%d %s", code, msg)
	}
	if got, _ := e.mem.ReadFile("/text.txt"); string(got) != "one\ntwo\n" {
		t.Fatalf("ASCII upload stored %q", got)
	}
}

func TestListenAndServeStopsOnShutdown(t *testing.T) {
	srv, err := New(Config{
		ListenAddr: "127.0.0.1:0",
		TLS:        TLSConfig{DevSelfSigned: true, ImplicitListenAddr: "127.0.0.1:0"},
	}, Deps{Auth: testAuth{}, Storage: startEnvStorage})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe() }()
	testtool.Eventually(t, 5*time.Second, "both listeners", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.listeners) == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrServerClosed) {
			t.Fatalf("ListenAndServe returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe did not return")
	}
}
