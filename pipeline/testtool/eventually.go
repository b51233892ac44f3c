package testtool

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds, failing t once within has passed: the suite's one way to
// wait for something another goroutine or process does (tests that own their clock use
// testing/synctest instead). It polls often at first and backs off to 50 ms.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}
