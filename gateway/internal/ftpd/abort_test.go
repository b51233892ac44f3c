package ftpd

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// startUpload logs in and starts STOR name, returning the data connection (TLS when tlsOn) after
// 1 MiB was written and reached the store.
func startUpload(t *testing.T, e *env, tlsOn bool, name string) (r *rawClient, raw, data net.Conn) {
	t.Helper()
	r = dialRaw(t, e.addr)
	if tlsOn {
		r.authTLS()
	}
	r.login(testUser, testPass)
	raw, data = r.openData(tlsOn)
	r.expect(150, "STOR %s", name)
	before := e.store.written.Load()
	chunk := randomData(t, 1<<20)
	if _, err := data.Write(chunk); err != nil {
		t.Fatalf("write data: %v", err)
	}
	testtool.Eventually(t, 5*time.Second, "data to reach the store", func() bool { return e.store.written.Load() >= before+int64(len(chunk)) })
	if e.mem != nil && e.mem.Pending() != 1 {
		t.Fatalf("%d uploads pending, want 1", e.mem.Pending())
	}
	return r, raw, data
}

func TestAbortedUploadsLeaveNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tls   bool
		abort func(t *testing.T, r *rawClient, raw, data net.Conn)
		// reply is the expected final reply on a control connection that is still open (0: none).
		reply int
	}{
		{
			name: "ABOR", tls: true, reply: 226,
			abort: func(t *testing.T, r *rawClient, raw, data net.Conn) {
				r.send("ABOR")
				if code, msg := r.read(); code != 426 && code != 226 {
					t.Fatalf("ABOR: %d %s", code, msg)
				}
			},
		},
		{
			// The TCP stream ends without close_notify while the client is still there: a cut
			// transfer, not a finished one.
			name: "TLS data closed without close_notify", tls: true, reply: 550,
			abort: func(t *testing.T, r *rawClient, raw, data net.Conn) { raw.Close() },
		},
		{
			name: "data connection reset", tls: false, reply: 550,
			abort: func(t *testing.T, r *rawClient, raw, data net.Conn) {
				raw.(*net.TCPConn).SetLinger(0)
				raw.Close()
			},
		},
		{
			// A killed process: the kernel closes the control connection (lower descriptor) first.
			name: "killed plain client", tls: false,
			abort: func(t *testing.T, r *rawClient, raw, data net.Conn) { r.close(); raw.Close() },
		},
		{
			// The same FINs processed in the other order: the data EOF looks like a finished
			// upload until the control connection closes a moment later.
			name: "killed plain client, data closed first", tls: false,
			abort: func(t *testing.T, r *rawClient, raw, data net.Conn) { raw.Close(); r.close() },
		},
		{
			name: "killed TLS client", tls: true,
			abort: func(t *testing.T, r *rawClient, raw, data net.Conn) { raw.Close(); r.close() },
		},
		{
			// Even a close_notify does not commit when the control connection is gone.
			name: "close_notify then control dropped", tls: true,
			abort: func(t *testing.T, r *rawClient, raw, data net.Conn) { r.close(); data.Close() },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mode := TLSRequired
			if !tc.tls {
				mode = TLSOptional
			}
			e := startEnv(t, Config{TLS: TLSConfig{Mode: mode}})
			r, raw, data := startUpload(t, e, tc.tls, "/partial.bin")
			tc.abort(t, r, raw, data)
			if tc.reply != 0 {
				code, msg := r.read()
				if code != tc.reply {
					t.Fatalf("final reply %d %s, want %d", code, msg, tc.reply)
				}
				if strings.Contains(tc.name, "close_notify") && !strings.Contains(msg, "close_notify") {
					t.Errorf("reply %q does not say why the upload was not stored", msg)
				}
				r.expect(200, "NOOP") // the session survives
			}
			e.assertNothingStored("/partial.bin")
			if !hasLine(e.logs.String(), "upload not committed") {
				t.Error("the abort is not logged")
			}
		})
	}
}

// The positive counterparts: the same raw clients, ending the stream properly, commit.
func TestCleanEndsCommit(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		e := startEnv(t, Config{TLS: TLSConfig{Mode: TLSOptional}})
		r, _, data := startUpload(t, e, tlsOn, "/whole.bin")
		data.Close() // FIN, or close_notify + FIN
		if code, msg := r.read(); code != 226 {
			t.Fatalf("tls=%v: final reply %d %s, want 226", tlsOn, code, msg)
		}
		got, err := e.mem.ReadFile("/whole.bin")
		if err != nil || len(got) != 1<<20 {
			t.Fatalf("tls=%v: stored %d bytes, %v", tlsOn, len(got), err)
		}
	}
}

func TestShutdownAbortsUnfinishedUploads(t *testing.T) {
	e := startEnv(t, Config{})
	idle := e.dial(true, testUser)
	startUpload(t, e, true, "/inflight.bin")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := e.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a stuck upload: %v, want deadline exceeded", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Shutdown overran its context")
	}
	e.assertNothingStored("/inflight.bin")
	if err := idle.NoOp(); err == nil {
		t.Fatal("idle session still open after Shutdown")
	}
	testtool.Eventually(t, 5*time.Second, "sessions to end", func() bool { return e.srv.clients() == 0 })
	// New connections are refused.
	if c, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepting after Shutdown")
	}
}

func TestShutdownWaitsForTransfers(t *testing.T) {
	e := startEnv(t, Config{TLS: TLSConfig{Mode: TLSOptional}})
	r, _, data := startUpload(t, e, false, "/drained.bin")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned during a transfer: %v", err)
	default:
	}
	data.Close()
	if code, msg := r.read(); code != 226 {
		t.Fatalf("final reply %d %s", code, msg)
	}
	if _, err := e.mem.ReadFile("/drained.bin"); err != nil {
		t.Fatalf("upload finished during Shutdown not stored: %v", err)
	}
	r.send("QUIT")
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// A TLS 1.2 client resumes too (session tickets), and an abort over TLS 1.2 still needs the
// close_notify.
func TestTLS12(t *testing.T) {
	e := startEnv(t, Config{})
	r := dialRaw(t, e.addr)
	r.tls.MaxVersion = tls.VersionTLS12
	r.tls.ServerName = "localhost"
	r.authTLS()
	r.login(testUser, testPass)
	_, data := r.openData(true)
	r.expect(150, "STOR /t12.txt")
	if _, err := data.Write([]byte("tls12")); err != nil {
		t.Fatal(err)
	}
	data.Close()
	if code, msg := r.read(); code != 226 {
		t.Fatalf("%d %s", code, msg)
	}
	if st := data.(*tls.Conn).ConnectionState(); st.Version != tls.VersionTLS12 || !st.DidResume {
		t.Fatalf("data connection version %x resumed %v", st.Version, st.DidResume)
	}
	if got, _ := e.mem.ReadFile("/t12.txt"); !strings.EqualFold(string(got), "tls12") {
		t.Fatalf("stored %q", got)
	}
}
