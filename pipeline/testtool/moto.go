package testtool

import (
	"fmt"
	"net/http"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Moto runs moto_server, a local emulator of AWS APIs (SQS in its JSON protocol, EventBridge with
// rules and SQS targets, SNS, ...), on a free 127.0.0.1 port until t ends, and returns its URL.
// A missing moto_server fails the test (see Path).
func Moto(t testing.TB) string {
	t.Helper()
	bin := Path(t, "moto_server")
	for range 5 {
		port := FreePort(t) // another process may still take it before moto binds: then try another
		out := &capped{max: 64 << 10}
		cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			if resp, err := http.Get(url + "/moto-api/"); err == nil {
				resp.Body.Close()
				t.Cleanup(func() {
					_ = cmd.Process.Kill()
					<-exited
					if t.Failed() {
						t.Logf("moto_server output:\n%s", out.String())
					}
				})
				return url
			}
			select {
			case <-exited:
				deadline = time.Time{}
			case <-time.After(100 * time.Millisecond):
			}
		}
		_ = cmd.Process.Kill()
		<-exited
		t.Logf("moto_server on port %d did not start: %s", port, out.String())
	}
	t.Fatal("moto_server did not start")
	return ""
}

// capped keeps the first max bytes of a process's output (moto logs every request).
type capped struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}
