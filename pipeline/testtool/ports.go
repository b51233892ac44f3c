package testtool

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Ports for servers a test starts and that bind later, often in another process (bin/ferry,
// versitygw, moto_server). A port from 127.0.0.1:0 is an ephemeral one: every outgoing
// connection of every process on the machine draws from that range, and in CI one took the
// gateway's SFTP port between the probe and the bind ("address already in use"). These come from
// below the kernel's ephemeral range, where only listeners that ask for a port by number go, and
// each process walks that range from a random start, so test processes running at once rarely
// probe the same port at the same moment.

const lowestPort = 10000

var (
	portNext  atomic.Int64
	portRange = sync.OnceValues(func() (int, int) {
		hi := ephemeralStart()
		portNext.Store(rand.Int64N(int64(hi - lowestPort)))
		return lowestPort, hi
	})
)

// ephemeralStart is the first port the kernel hands to outgoing connections (32768 by default).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < lowestPort+1000 {
		return 32768
	}
	return n
}

// nextPort is the next port of this process's walk.
func nextPort() int {
	lo, hi := portRange()
	return lo + int(portNext.Add(1)%int64(hi-lo))
}

// FreePortErr is FreePort for code that has no testing.TB.
func FreePortErr() (int, error) { return FreePortRangeErr(1) }

// FreePortRangeErr finds n consecutive ports free on every host (127.0.0.1 when none are given),
// and returns the first.
func FreePortRangeErr(n int, hosts ...string) (int, error) {
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1"}
	}
	lo, hi := portRange()
	var lastErr error
	for range 500 {
		start := nextPort()
		if start+n > hi {
			continue
		}
		if err := probe(start, n, hosts); err != nil {
			lastErr = err
			continue
		}
		// Keep the walk past the whole range, so the next caller in this process starts after it.
		portNext.Add(int64(n - 1))
		return start, nil
	}
	return 0, fmt.Errorf("no %d consecutive free ports between %d and %d (last: %v)", n, lo, hi-1, lastErr)
}

func probe(start, n int, hosts []string) error {
	for p := start; p < start+n; p++ {
		for _, h := range hosts {
			l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(p)))
			if err != nil {
				return err
			}
			l.Close()
		}
	}
	return nil
}

// FreePort returns a port free on 127.0.0.1 now, for a server that binds it later.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := FreePortErr()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FreeAddr is FreePort as "127.0.0.1:port".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// FreePortRange returns the first of n consecutive ports free on every host (127.0.0.1 when none
// are given): an FTP server's passive range.
func FreePortRange(t testing.TB, n int, hosts ...string) int {
	t.Helper()
	p, err := FreePortRangeErr(n, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
