// Package ferryproc runs the real ferry binary for tests: built once per test binary with `go
// build` (the code `make build` and the Dockerfile build), started with `ferry serve` on a config
// file, its log kept, its listeners waited for, its /metrics scraped and its memory read, and
// stopped with SIGTERM as an orchestrator does. Tests that need the process's own RSS, its exit
// code or its signal handling use it; the others run app.Run in-process.
package ferryproc

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Build returns the path of a ferry binary built from this checkout, once per test binary.
func Build(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ferry")
		cmd := exec.Command("go", "build", "-trimpath", "-o", binPath, "./gateway/cmd/ferry")
		cmd.Dir = moduleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./gateway/cmd/ferry: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// moduleRoot is the folder of go.mod, from this source file's place in it.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Process is a running `ferry serve`.
type Process struct {
	Cmd *exec.Cmd
	Log *logbuf.Buffer // stdout and stderr

	done chan struct{}
	err  error // Wait's, once done is closed
}

// Start runs `ferry serve --config config` with env added to the test's environment, until
// the test ends (SIGTERM, then SIGKILL after 30s). The process dies with the test binary.
func Start(t testing.TB, bin, config string, env ...string) *Process {
	t.Helper()
	p := &Process{Log: &logbuf.Buffer{Max: 32 << 20}, done: make(chan struct{})}
	p.Cmd = exec.Command(bin, "serve", "--config", config)
	p.Cmd.Stdout, p.Cmd.Stderr = p.Log, p.Log
	p.Cmd.Env = append(append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true"), env...)
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.Exited() {
			return
		}
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		if _, err := p.Wait(30 * time.Second); err != nil {
			_ = p.Cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("ferry log (tail):\n%s", Tail(p.Log.String(), 8000))
		}
	})
	return p
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to d for the process to end and returns its exit code.
func (p *Process) Wait(d time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode(), nil
	case <-time.After(d):
		return -1, fmt.Errorf("ferry still running after %s", d)
	}
}

// WaitListening waits until something accepts TCP connections on every addr, failing the test
// (with the log) when the process exits or 20s pass first.
func (p *Process) WaitListening(t testing.TB, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range addrs {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if p.Exited() {
				t.Fatalf("ferry exited before listening on %s:\n%s", addr, Tail(p.Log.String(), 8000))
			}
			if time.Now().After(deadline) {
				t.Fatalf("nothing listens on %s after 20s: %v\n%s", addr, err, Tail(p.Log.String(), 8000))
			}
			time.Sleep(30 * time.Millisecond)
		}
	}
}

// RSS is the process's resident memory now, in bytes (Linux /proc).
func (p *Process) RSS() (int64, error) {
	return Status(p.Cmd.Process.Pid, "VmRSS")
}

// PeakRSS is the process's peak resident memory so far, in bytes (Linux /proc, VmHWM).
func (p *Process) PeakRSS() (int64, error) {
	return Status(p.Cmd.Process.Pid, "VmHWM")
}

// Status reads a memory field of /proc/PID/status (VmRSS, VmHWM, …), in bytes.
func Status(pid int, field string) (int64, error) {
	field += ":"
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}

// RSSSampler records the highest VmRSS of a process while it runs (VmHWM cannot be reset
// by every kernel, and covers the process's whole life).
type RSSSampler struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

// SampleRSS reads the VmRSS of pid every interval until Stop.
func SampleRSS(pid int, every time.Duration) *RSSSampler {
	s := &RSSSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if v, err := Status(pid, "VmRSS"); err == nil && v > s.peak.Load() {
				s.peak.Store(v)
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns the highest VmRSS seen, in bytes.
func (s *RSSSampler) Stop() int64 {
	close(s.stop)
	<-s.done
	return s.peak.Load()
}

// Scrape fetches http://addr/metrics and parses it (Prometheus text format).
func Scrape(ctx context.Context, addr string) (map[string]*MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// Sum adds the values of every series of the family name whose labels include match (counters,
// gauges and untyped; a histogram's sample count). 0 when there is none.
func Sum(families map[string]*MetricFamily, name string, match map[string]string) float64 {
	f := families[name]
	if f == nil {
		return 0
	}
	var total float64
next:
	for _, m := range f.GetMetric() {
		for k, v := range match {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// Tail is the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// MetricFamily is a parsed metric family (client_model's type).
type MetricFamily = dto.MetricFamily
