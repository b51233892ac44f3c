package testtool

import (
	"net"
	"strconv"
	"testing"
)

// The ports come from below the ephemeral range, are free, and one process never hands out the
// same port twice in a row of calls (parallel tests in one package start servers at once).
func TestFreePorts(t *testing.T) {
	_, hi := portRange()
	seen := map[int]bool{}
	for range 200 {
		start := FreePortRange(t, 3)
		for p := start; p < start+3; p++ {
			if p < lowestPort || p >= hi {
				t.Fatalf("port %d outside %d-%d", p, lowestPort, hi-1)
			}
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
		}
	}
	addr := FreeAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("FreeAddr %s: %v", addr, err)
	}
	l.Close()
	if _, p, _ := net.SplitHostPort(addr); p == "" || p == strconv.Itoa(0) {
		t.Fatalf("FreeAddr %q has no port", addr)
	}
}
