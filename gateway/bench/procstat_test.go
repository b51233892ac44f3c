package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Measuring a server process from outside, through /proc: its CPU time (what it costs per byte
// on a machine where the client and the S3 server share the cores) and its peak resident set.

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on every Linux
// architecture Go supports (the kernel exports no other value to user space).
const clockTicks = 100

// cpuTime is the user+system CPU time the process has used so far.
func cpuTime(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	d, err := readCPU(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func readCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	d, err := parseStatCPU(string(data))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return d, nil
}

// parseStatCPU reads utime+stime from a /proc/PID/stat line.
func parseStatCPU(s string) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, fmt.Errorf("no command name in %q", s)
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the name", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q stime %q", f[11], f[12])
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// resetPeakRSS sets the process's VmHWM back to its current RSS (clear_refs "5", Linux 4.0+),
// so the next peak read is the high-water mark of what runs in between, not of the process's
// whole life. It fails the test if the kernel does not honour it.
func resetPeakRSS(tb testing.TB, pid int) {
	tb.Helper()
	if err := resetPeak(pid); err != nil {
		tb.Fatal(err)
	}
	// VmHWM is updated lazily from the counters; right after the reset it may exceed the RSS by
	// what the process touched since, never by the old peak.
	hwm, rss := procStatus(tb, pid, "VmHWM"), procStatus(tb, pid, "VmRSS")
	if hwm > rss+16<<20 {
		tb.Fatalf("peak RSS of %d not reset: VmHWM %d KiB, VmRSS %d KiB", pid, hwm>>10, rss>>10)
	}
}

func resetPeak(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS of %d: %w", pid, err)
	}
	return nil
}

// usage is what a server process spent while a workload ran.
type usage struct {
	cpu  time.Duration
	peak int64 // bytes, VmHWM
}

// measureProcess resets pid's peak RSS, runs fn and returns the CPU time pid used meanwhile
// and its peak RSS.
func measureProcess(pid int, fn func()) (usage, error) {
	if err := resetPeak(pid); err != nil {
		return usage{}, err
	}
	before, err := readCPU(pid)
	if err != nil {
		return usage{}, err
	}
	fn()
	after, err := readCPU(pid)
	if err != nil {
		return usage{}, err
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kib, err := strconv.ParseInt(f[1], 10, 64)
			return usage{cpu: after - before, peak: kib << 10}, err
		}
	}
	return usage{}, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// loadAverage is the first three fields of /proc/loadavg, for the table's header.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
